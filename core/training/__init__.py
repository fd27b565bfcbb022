"""Training scripts, one module each, run as ``python -m core.training.NAME --help``.

Every script is a thin module over the shared loop in :mod:`core.training.common`: it adds its own
flags to :func:`~core.training.common.add_common_args` and hands a
:class:`~core.training.common.TrainingTask` builder to :func:`~core.training.common.run_training`.
"""

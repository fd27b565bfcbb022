"""diffusers pipelines of Kinema, one module per pipeline (e.g. ``core.pipelines.svd_trajectory``).

Nothing is imported here, so importing one pipeline never loads another's dependencies: import the
module you need. Shared SVD steps live in ``core.pipelines.svd_common``.
"""

"""Every evaluation of Kinema: metrics, fixtures, and one module per table.

Building blocks (no argparse, no pipelines; production code such as the trainers' validation and the
keyframe app's sample rebuild may import them):

- `metrics`: ObjMC (drag control fidelity), scale-and-shift-invariant AbsRel / delta1 (depth), flow
  end-point error, PSNR / SSIM of held-out frames, warp error of edited keyframes.
- `fixtures`: the photos (scikit-image's astronaut, coffee, chelsea), camera clips over them, the
  keyframes of a pan, and the drag requests of each photo.
- `report`: the one output style: ``--json PATH`` (default ``eval-results/NAME.json``), ONE table, JSON.

Evaluations, each ``python -m core.eval.NAME`` printing one table and writing JSON:

=================  ======================================================================================
``flow``           end-point error of the flow estimators on known motions of photos and Middlebury
                   motorcycle
``flow_encoding``  round-trip error of the flow <-> image encoding against its analytic bound
``interpolation``  PSNR / SSIM of held-out frames: flow-guided inbetweening against a cross-fade
``keyframe_edit``  warp error of SD keyframe edits, joint (cross-frame attention) against one at a time
``joint_depth``    AbsRel / delta1 of the joint pipeline's depth on synthetic scenes with exact depth
=================  ======================================================================================

The drag evaluation (ObjMC of every drag backend) is ``python -m apps.drag.evaluate``, in the same
style and built on `metrics`, `fixtures` and `report`, but it stays with the app: it renders through the
app's backend registry (`apps.drag.backends`: which models a backend needs, how its options map to a
pipeline call), and core must not import apps. Moving that registry into core would be a change of the
app's structure, not of where evaluations live; the warp engine alone, which core can reach, would not
be the comparison the table exists for.
"""

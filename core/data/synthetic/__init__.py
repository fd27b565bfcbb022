"""Procedural scenes with exact ground truth, deterministic by seed.

Two kinds of scene, both rendered with vectorised numpy:

- Image scenes: spheres and cubes standing on a checkered ground plane in front of a back wall, seen by
  a pinhole camera and ray-cast per pixel. `ImageScene.depth` is the exact camera z-depth of the surface
  each pixel centre's ray hits; colour is Lambert shading with a directional light and hard shadows.
- Video scenes: textured flat sprites (discs, squares) that translate and spin over a textured
  background while the camera pans. Textures are continuous functions of surface coordinates, so the
  flow of every pixel is exact: `VideoScene.flow_px[t]` maps frame t to frame t + 1.

Coordinates: pixel centres sit at integer coordinates (x = column, y = row), as cv2.remap expects.
Camera space is x right, y down, z forward.

Occlusion: `flow_px[t]` at a pixel is the motion of the surface point visible there in frame t, whether
or not that point is still visible in frame t + 1. `occluded[t]` marks the pixels whose point is hidden
in frame t + 1 (another sprite covers it, or it leaves the frame); warping frame t + 1 back with the flow
reproduces frame t only where `occluded[t]` is False.

`write_image_depth_folder` and `write_video_folder` write these scenes in the folder layouts the loaders
of `core.data` read, so every loader can be tested on data with known content.
"""

from core.data.synthetic.folders import (
    disparity_of,
    write_image_depth_folder,
    write_video_folder,
)
from core.data.synthetic.image import (
    PALETTE,
    Box,
    ImageScene,
    ImageSceneSpec,
    Sphere,
    camera_rays,
    make_image_scene,
    random_image_spec,
    render_image_scene,
)
from core.data.synthetic.video import (
    Sprite,
    Texture,
    VideoScene,
    VideoSceneSpec,
    make_video_scene,
    random_texture,
    random_video_spec,
    render_video_scene,
)

__all__ = [
    "Box",
    "ImageScene",
    "ImageSceneSpec",
    "PALETTE",
    "Sphere",
    "Sprite",
    "Texture",
    "VideoScene",
    "VideoSceneSpec",
    "camera_rays",
    "disparity_of",
    "make_image_scene",
    "make_video_scene",
    "random_image_spec",
    "random_texture",
    "random_video_spec",
    "render_image_scene",
    "render_video_scene",
    "write_image_depth_folder",
    "write_video_folder",
]

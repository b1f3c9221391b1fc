"""Reading inputs: videos (decoded frames with their presentation timestamps) and in-memory frames."""

from videolens.io.video import Video, as_frames, load_video

__all__ = ["Video", "as_frames", "load_video"]

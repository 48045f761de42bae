"""What a render is asked for and what it gives back: plain data, shared by the event loop and the workers.

Apart from the compositor so that the daemon's main process, which only routes requests and passes
these along, never imports PyAV or Pillow: that keeps the main process small (idle PSS) and takes
their import off the cold-start path before the workers are spawned (bench/footprint.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True)
class OutputSpec:
    width: int
    height: int
    quality: int = 85
    format: str = "jpeg"

    @property
    def content_type(self) -> str:
        return "image/png" if self.format == "png" else "image/jpeg"


@dataclass
class RenderResult:
    body: bytes
    content_type: str
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, problem), first report only
    clips: int = 0
    image: Image.Image | None = None  # only for a letterboxed output's inner canvas, before encoding
    source: str = ""  # what the video frames came from: "proxy", "original", "mixed"; "" for none (X-Preview-Source)
    # Timeline frames [from, to) this worker's decoder of the costliest video layer serves without a seek:
    # frames kept behind it (decoded.py) up to the next keyframe ahead, or a short forward decode (admission's locality)
    reach: tuple[int, int] | None = None

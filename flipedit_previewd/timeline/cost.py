"""What a timeline may cost a render: its limits, checked when it is read or PUT.

(Not the HTTP side's limits on a request, ``http.protocol.Limits``: those bound what the parser
buffers; these bound the work a well-formed timeline would make a worker do.)

A timeline of thousands of full-canvas layers at the largest canvas takes a
minute per frame: a request for it would hold a worker far past any budget.
Its cost is bounded before any render: the most layers visible at one frame
times the canvas pixels (``max_layer_pixels``), the number of clips
(``max_timeline_clips``) and the length of each path (the kernel's PATH_MAX:
longer cannot name a file, and resolving a path of millions of ``x/..``
components is itself a minute of work). A breach is a 413 naming the limit;
a project database that breaches it keeps its last good timeline.
"""

from __future__ import annotations

from flipedit_previewd.common.errors import PayloadTooLarge
from flipedit_previewd.timeline.model import Timeline

PATH_MAX = 4096


def max_overlap(timeline: Timeline) -> int:
    """The most clips of visible tracks drawn at any one frame (a sweep over start/end frames)."""
    fps = timeline.frame_rate
    edges: list[tuple[int, int]] = []
    for track in timeline.tracks:
        if not track.visible:
            continue
        for clip in track.clips:
            if clip.type not in ("video", "image"):
                continue
            start, end = clip.start_frame(fps), clip.end_frame(fps)
            if end > start:
                edges.append((start, 1))
                edges.append((end, -1))
    edges.sort()  # at equal frames the -1 (an end) sorts first: a clip ending at n is not drawn at n
    depth = best = 0
    for _, step in edges:
        depth += step
        best = max(best, depth)
    return best


def check_timeline(timeline: Timeline, max_layer_pixels: int, max_clips: int) -> None:
    """Raise ``PayloadTooLarge`` (413) naming the limit a timeline breaks."""
    count = 0
    for t_index, track in enumerate(timeline.tracks):
        for c_index, clip in enumerate(track.clips):
            count += 1
            if len(clip.source_path.encode("utf-8", "surrogateescape")) >= PATH_MAX:
                where = f"timeline.tracks[{t_index}].clips[{c_index}].source_path"
                raise PayloadTooLarge(
                    f"{where}: longer than PATH_MAX ({PATH_MAX} bytes)", field=where, limit="path_max"
                )
    if count > max_clips:
        raise PayloadTooLarge(
            f"timeline: {count} clips exceed max_timeline_clips ({max_clips})",
            field="timeline.tracks",
            limit="max_timeline_clips",
        )
    layers = max_overlap(timeline)
    cost = layers * timeline.canvas_width * timeline.canvas_height
    if cost > max_layer_pixels:
        raise PayloadTooLarge(
            f"timeline: {layers} layers at one frame x {timeline.canvas_width}x{timeline.canvas_height} canvas = "
            f"{cost} layer pixels exceeds max_layer_pixels ({max_layer_pixels})",
            field="timeline",
            limit="max_layer_pixels",
        )

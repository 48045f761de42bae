"""What a media file is, told by its first bytes, and what the decoders may be given.

The extension is the user's guess and the project folder may come from someone else, so
the decision which decoder sees a file is made on its content: a ``.jpg`` that is an MP4
goes to FFmpeg, a ``.mp4`` that is a TIFF is refused by name. A file whose signature is
unknown goes where its clip type or extension sends it, and that decoder's own allow-list
(Pillow's ``formats=``, FFmpeg's ``format_whitelist``) refuses what is not on it.
"""

from __future__ import annotations

from dataclasses import dataclass

# What Pillow may decode: the formats the README promises, never one guessed from content
# (EPS starts Ghostscript; many others are rarely-audited decoders).
STILL_FORMATS = ["JPEG", "PNG", "WEBP", "BMP", "GIF"]
STILL_NAMES = "JPEG, PNG, WebP, BMP, GIF"
STILL_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}
# What FFmpeg may demux: containers whose media is inside the one opened file. No playlists
# (hls, dash), lists (concat), image sequences (image2), or anything that opens other files or URLs.
VIDEO_DEMUXERS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts,mpeg,flv,ogg,asf,mxf,ivf,h264,hevc,m4v,mpegvideo"
CONTAINER_NAMES = (
    "MP4/MOV, Matroska/WebM, AVI, MPEG-TS (.ts/.mts/.m2ts), MPEG-PS, FLV, Ogg, ASF, MXF, IVF, raw H.264/HEVC/MPEG"
)
# What FFmpeg may decode, by decoder name (``codec_context.name``): the codecs cameras, phones,
# screen recorders and editors write. A container may carry any codec (a TIFF or an SVG track
# in a .mov); the rarely-audited decoders stay out of reach of a project received from someone else.
VIDEO_CODECS = frozenset(
    {
        "h264",
        "hevc",
        "vp8",
        "vp9",
        "av1",
        "libdav1d",
        "libaom-av1",
        "mpeg1video",
        "mpeg2video",
        "mpeg4",
        "msmpeg4v2",
        "msmpeg4v3",
        "h263",
        "mjpeg",
        "prores",
        "dnxhd",
        "vc1",
        "wmv3",
        "theora",
        "ffv1",
        "cfhd",
        "dvvideo",
        "rawvideo",
        "hap",
        "qtrle",
        "png",
        "utvideo",
    }
)


@dataclass(frozen=True)
class Sniffed:
    """``kind`` is "image", "video" or "refused"; ``name`` names the format for messages."""

    kind: str
    name: str

    def refusal(self) -> str:
        if self.kind != "refused":
            return ""
        if self.name in _AUDIO:
            return f"{self.name} has no picture (an audio file)"
        if self.name in _REFUSED_VIDEO:
            return f"{self.name} is not an allowed video container; allowed: {CONTAINER_NAMES}"
        return f"{self.name} is not an allowed still format; allowed: {STILL_NAMES}"


_AUDIO = {"WAV", "MP3", "FLAC"}
_REFUSED_VIDEO = {"YUV4MPEG", "HLS playlist", "DASH manifest", "concat list"}
# (offset, signature, kind, name): first match wins, so the longer or more specific comes first.
_SIGNATURES: tuple[tuple[int, bytes, str, str], ...] = (
    (0, b"\xff\xd8\xff", "image", "JPEG"),
    (0, b"\x89PNG\r\n\x1a\n", "image", "PNG"),
    (0, b"GIF87a", "image", "GIF"),
    (0, b"GIF89a", "image", "GIF"),
    (0, b"II*\x00", "refused", "TIFF"),
    (0, b"MM\x00*", "refused", "TIFF"),
    (0, b"II+\x00", "refused", "TIFF"),
    (0, b"8BPS", "refused", "PSD"),
    (0, b"%PDF", "refused", "PDF"),
    (0, b"%!PS", "refused", "PostScript"),
    (0, b"\xc5\xd0\xd3\xc6", "refused", "PostScript"),
    (0, b"\x00\x00\x01\x00", "refused", "ICO"),
    (0, b"qoif", "refused", "QOI"),
    (0, b"\xff\x0a", "refused", "JPEG XL"),
    (0, b"\x00\x00\x00\x0cJXL ", "refused", "JPEG XL"),
    (0, b"\x00\x00\x00\x0cjP  ", "refused", "JPEG 2000"),
    (0, b"\xffO\xffQ", "refused", "JPEG 2000"),
    (0, b"gimp xcf", "refused", "XCF"),
    (0, b"P1", "refused", "PNM"),
    (0, b"P2", "refused", "PNM"),
    (0, b"P3", "refused", "PNM"),
    (0, b"P4", "refused", "PNM"),
    (0, b"P5", "refused", "PNM"),
    (0, b"P6", "refused", "PNM"),
    (0, b"YUV4MPEG2", "refused", "YUV4MPEG"),
    (0, b"#EXTM3U", "refused", "HLS playlist"),
    (0, b"ffconcat", "refused", "concat list"),
    (0, b"\x1aE\xdf\xa3", "video", "Matroska"),
    (0, b"FLV", "video", "FLV"),
    (0, b"OggS", "video", "Ogg"),
    (0, b"0&\xb2u\x8ef\xcf\x11", "video", "ASF"),
    (0, b"\x06\x0e+4", "video", "MXF"),
    (0, b"DKIF", "video", "IVF"),
    (0, b"\x00\x00\x01\xba", "video", "MPEG-PS"),
    (0, b"\x00\x00\x01\xb3", "video", "MPEG video"),
    (0, b"\x00\x00\x00\x01", "video", "raw H.264/HEVC"),
    (0, b"\x00\x00\x01", "video", "raw H.264/HEVC"),
    (0, b"ID3", "refused", "MP3"),
    (0, b"fLaC", "refused", "FLAC"),
)
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis"}
_MP4_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot"}
HEAD_BYTES = 400  # enough for two 192-byte MPEG-TS packets


def sniff(head: bytes) -> Sniffed | None:
    """The format of a file that starts with ``head``, or None when the signature is not known."""
    if head[:4] == b"RIFF" and len(head) >= 12:
        fourcc = head[8:12]
        if fourcc == b"WEBP":
            return Sniffed("image", "WebP")
        if fourcc == b"AVI ":
            return Sniffed("video", "AVI")
        if fourcc == b"WAVE":
            return Sniffed("refused", "WAV")
        return Sniffed("refused", "RIFF " + fourcc.decode("latin-1").strip())
    if head[:2] == b"BM" and len(head) >= 18 and head[14] in (12, 40, 52, 56, 64, 108, 124):
        return Sniffed("image", "BMP")
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _HEIF_BRANDS:
            return Sniffed("refused", "AVIF" if brand in (b"avif", b"avis") else "HEIF/HEIC")
        return Sniffed("video", "MP4/MOV")
    if head[4:8] in _MP4_BOXES:
        return Sniffed("video", "MP4/MOV")
    if _is_transport_stream(head):
        return Sniffed("video", "MPEG-TS")
    stripped = head.lstrip()
    if stripped[:5] in (b"<?xml", b"<svg ", b"<svg>") or stripped[:4] == b"<MPD":
        return Sniffed("refused", "DASH manifest" if b"<MPD" in head else "SVG/XML")
    for offset, signature, kind, name in _SIGNATURES:
        if head[offset : offset + len(signature)] == signature:
            return Sniffed(kind, name)
    if head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return Sniffed("refused", "MP3")
    return None


def _is_transport_stream(head: bytes) -> bool:
    """188-byte packets (.ts) or 192-byte ones with a 4-byte timecode first (.m2ts/.mts)."""
    if len(head) >= 189 and head[0] == 0x47 and head[188] == 0x47:
        return True
    return len(head) >= 197 and head[4] == 0x47 and head[196] == 0x47

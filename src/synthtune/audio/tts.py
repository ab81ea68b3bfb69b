"""Offline text-to-speech through eSpeak NG (the ``synthtune[audio]`` extra).

Why this engine and this package: eSpeak NG is a formant synthesiser, so it needs no model
weights and runs hundreds of times faster than real time on one CPU core, with voices for
over 100 languages. The ``espeakng-loader`` wheel (the one kokoro and misaki use) ships
libespeak-ng 1.52.0 *and* its ``espeak-ng-data`` (phoneme tables, intonation, every
language's dictionary, the extended Mandarin one included) for manylinux x86_64 and aarch64,
macOS and Windows, so ``pip install`` is the whole setup: no apt, no network at run time.
Its Python side only says where the files are; we drive the C API through ctypes.
eSpeak NG is GPL-3.0-or-later: an optional extra, loaded at run time, never vendored here.

Determinism: eSpeak keeps synthesis state in static variables that neither
``espeak_Terminate`` nor a second ``espeak_Initialize`` resets (wavegen.c: the pitch-flutter
table index, the glottal cycle counter behind "roughness", the gain control), so the same
sentence spoken twice in one process comes out up to ~10 ms longer or shorter, with a
different waveform; espeak_ng_SetRandSeed does not cover these. Each call therefore loads
the library afresh (dlopen, initialise, speak, terminate, dlclose) from synthtune's own copy
of it, which makes every call equal to the first call of a fresh process. That costs about
5 ms a call (the voice and its dictionary are read again) and 0.3-2 KB a call of static
buffers that the library allocates lazily and dlclose drops.

Speed, measured on this project's 2-core development machine (the whole ``speak`` call,
16 kHz output): about 270x real time for a short English or Mandarin sentence (2.5-3.3 s of
speech, where the per-call reload dominates) and about 650-700x for a paragraph (20-30 s).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import locale
import math
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

INSTALL_HINT = "pip install 'synthtune[audio]'"
NATIVE_RATE = 22050  # eSpeak NG's sample rate (from its phondata); checked at load time

# Friendly names to eSpeak voice names, each checked to speak. eSpeak looks voices up by
# file name ("cmn") or full name, not by language code, so "zh" and "en-gb" need mapping.
VOICES: dict[str, str] = {
    "en": "en",  # English (Great Britain)
    "en-gb": "en",
    "en-us": "en-us",
    "cmn": "cmn",  # Mandarin, Latin letters read as English
    "zh": "cmn",
    "yue": "yue",  # Cantonese
    "de": "de",
    "fr": "fr",
    "es": "es",
}

RATE_RANGE = (80, 450)  # words per minute, speak_lib.h's espeakRATE_MINIMUM/MAXIMUM
PITCH_RANGE = (0, 100)  # speak_lib.h: "base pitch, range 0-100. 50=normal"

# C constants (speak_lib.h, espeak_ng.h)
_ENOUTPUT_MODE_SYNCHRONOUS = 0x0001  # synthesise inside espeak_Synth, calling back per chunk
_ESPEAK_RATE = 1
_ESPEAK_PITCH = 3
_ESPEAK_CHARS_UTF8 = 1  # no espeakSSML: "<" in generated text is read, not parsed
_BUFFER_MS = 200  # audio per callback: fewer, larger chunks
_VOICE_NAME_MAX = 59  # espeak_ng_SetVoiceByName copies the name into char[60]
_PATH_MAX = 150  # path_home is char[160] on POSIX and gets "/voices" etc. appended

_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

# The library is process-global state and not thread-safe: one call at a time.
_LOCK = threading.Lock()
_chunks: list[bytes] = []  # filled by the callback during the current call, under _LOCK


@_SynthCallback
def _collect(wav: ctypes._Pointer[ctypes.c_short], n: int, _events: int | None) -> int:
    """espeak's synth callback: keep the chunk; a NULL buffer marks the end. 0 = go on."""
    if wav and n > 0:
        _chunks.append(ctypes.string_at(wav, n * ctypes.sizeof(ctypes.c_short)))
    return 0


@dataclass(frozen=True)
class _Private:
    """The library file this process loads and the voice data path handed to it."""

    library: Path
    data: Path


_private: _Private | None = None


def _new_lock_after_fork() -> None:
    # A fork while another thread held the lock would leave the child's copy held forever.
    global _LOCK
    _LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_after_fork)


def _package_paths() -> tuple[Path, Path]:
    """(shared library, espeak-ng-data) as installed by espeakng-loader."""
    import espeakng_loader

    return Path(espeakng_loader.get_library_path()), Path(espeakng_loader.get_data_path())


def _private_copy() -> _Private:
    """The library copied into synthtune's cache (once per installed build): a file of our
    own unloads on dlclose even when another package (misaki, phonemizer) holds the
    installed one in this process, and never shares their state. A symlink beside it gives
    the voice data a short path, as eSpeak silently truncates one past 160 characters.
    Where the cache cannot be written, the installed files are used as they are."""
    global _private
    if _private is not None:
        return _private
    from synthtune.model_names import cache_root

    library, data = _package_paths()
    key = hashlib.sha256(library.read_bytes() + str(data).encode()).hexdigest()[:16]
    folder = cache_root() / "espeak-ng" / key
    try:
        if not (folder / library.name).is_file():
            _place(folder, library, data)
    except OSError:
        found = _Private(library, data)
    else:
        link = folder / "espeak-ng-data"
        found = _Private(folder / library.name, link if link.is_dir() else data)
    if len(str(found.data)) > _PATH_MAX and len(str(data)) <= _PATH_MAX:
        found = _Private(found.library, data)  # a deep cache folder: the installed path
    if len(str(found.data)) > _PATH_MAX:
        raise OSError(
            f"the eSpeak NG data path is over {_PATH_MAX} characters ({found.data}); "
            "point SYNTHTUNE_CACHE at a shorter folder"
        )
    _private = found
    return _private


def _place(folder: Path, library: Path, data: Path) -> None:
    """Fill a staging folder and rename it into place, so that concurrent processes see
    either nothing or a complete copy; the first rename wins."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder.parent))
    try:
        shutil.copy2(library, staging / library.name)
        with contextlib.suppress(OSError):  # no symlinks (Windows): the long path then
            (staging / "espeak-ng-data").symlink_to(data, target_is_directory=True)
        with contextlib.suppress(OSError):  # another process placed it first
            os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _status_message(lib: ctypes.CDLL, status: int) -> str:
    buffer = ctypes.create_string_buffer(512)
    lib.espeak_ng_GetStatusCodeMessage(ctypes.c_int(status), buffer, ctypes.c_size_t(512))
    return buffer.value.decode("utf-8", "replace") or f"status {status:#x}"


def _open() -> ctypes.CDLL:
    """Load a fresh instance and initialise it for synchronous synthesis. Uses the espeak_ng_
    calls, as espeak_Initialize reports a missing data folder only on stderr."""
    private = _private_copy()
    lib = ctypes.CDLL(str(private.library))
    try:
        lib.espeak_ng_InitializePath(str(private.data).encode())
        status = lib.espeak_ng_Initialize(None)
        if status != 0:
            raise OSError(f"eSpeak NG did not initialise: {_status_message(lib, status)}")
        lib.espeak_ng_InitializeOutput(_ENOUTPUT_MODE_SYNCHRONOUS, _BUFFER_MS, None)
        rate = lib.espeak_ng_GetSampleRate()
        if rate != NATIVE_RATE:
            raise OSError(f"eSpeak NG runs at {rate} Hz, expected {NATIVE_RATE}")
        lib.espeak_SetSynthCallback(_collect)
    except BaseException:
        _close(lib)
        raise
    return lib


def _close(lib: ctypes.CDLL) -> None:
    """Terminate and unload, so the next _open starts from the library's initial state."""
    lib.espeak_Terminate()
    import _ctypes

    unload = getattr(_ctypes, "dlclose", None) or getattr(_ctypes, "FreeLibrary", None)
    if unload is not None:
        unload(lib._handle)


def _espeak_voice(voice: str, data: Path) -> str:
    """The eSpeak name for a friendly or eSpeak voice name; ValueError for names eSpeak
    would truncate or for a variant ("en+f3") that has no file (eSpeak ignores those)."""
    name = VOICES.get(voice.lower(), voice)
    if not name or "\0" in name or len(name) > _VOICE_NAME_MAX:
        raise ValueError(_unknown_voice(voice))
    _, _, variant = name.partition("+")
    if variant and not (data / "voices" / "!v" / variant).is_file():
        raise ValueError(_unknown_voice(voice))
    return name


def _unknown_voice(voice: str) -> str:
    return f"unknown eSpeak voice {voice!r}; known ones include {', '.join(VOICES)}"


def _check_range(name: str, value: int, bounds: tuple[int, int]) -> None:
    # eSpeak clamps out-of-range values silently; a caller asking for rate 40 should know.
    if not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{name} {value} is outside {bounds[0]}-{bounds[1]}")


def _synthesise(lib: ctypes.CDLL, text: str, voice: str, rate: int, pitch: int) -> np.ndarray:
    """int16 samples at NATIVE_RATE from an opened library."""
    if lib.espeak_SetVoiceByName(voice.encode("utf-8")) != 0:
        raise ValueError(_unknown_voice(voice))
    for parameter, value in ((_ESPEAK_RATE, rate), (_ESPEAK_PITCH, pitch)):
        if lib.espeak_SetParameter(parameter, value, 0) != 0:
            raise OSError(f"eSpeak NG refused parameter {parameter}={value}")
    encoded = text.replace("\0", " ").encode("utf-8", "replace") + b"\0"
    _chunks.clear()
    status = lib.espeak_Synth(
        ctypes.c_char_p(encoded),
        ctypes.c_size_t(len(encoded)),
        ctypes.c_uint(0),  # from the start of the text
        ctypes.c_int(0),  # POS_CHARACTER
        ctypes.c_uint(0),  # to its end
        ctypes.c_uint(_ESPEAK_CHARS_UTF8),
        None,
        None,
    )
    lib.espeak_Synchronize()
    if status != 0:
        raise OSError(f"eSpeak NG synthesis failed with error {status}")
    samples = np.frombuffer(b"".join(_chunks), dtype=np.int16)
    _chunks.clear()
    return samples


def _to_float(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """float32 in [-1, 1] at sample_rate. All-zero output (punctuation, blanks) is no
    speech: eSpeak still emits a few ms of zeros for it."""
    if not samples.any():
        return np.zeros(0, dtype=np.float32)
    wave = samples.astype(np.float32) / 32768.0
    if sample_rate != NATIVE_RATE:
        from scipy.signal import resample_poly

        g = math.gcd(sample_rate, NATIVE_RATE)
        wave = resample_poly(wave, sample_rate // g, NATIVE_RATE // g)
    # the anti-alias filter can overshoot a full-scale peak
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


def speak(
    text: str,
    voice: str = "en",
    rate: int = 175,
    pitch: int = 50,
    sample_rate: int = 16000,
) -> np.ndarray:
    """Speech for ``text`` as float32 mono in [-1, 1] at ``sample_rate``; the same arguments
    give the same array. ``voice`` is a key of ``VOICES`` or any eSpeak voice name
    (``"en-us"``, ``"sit/yue"``, ``"en+f3"``), ``rate`` words per minute (80-450), ``pitch``
    0-100 (50 is the voice's own). Text that makes no sound gives an empty array.
    ValueError for an unknown voice or an argument out of range, OSError when the engine
    fails (``tts_unavailable()`` says why up front)."""
    _check_range("rate", int(rate), RATE_RANGE)
    _check_range("pitch", int(pitch), PITCH_RANGE)
    if int(sample_rate) <= 0:
        raise ValueError(f"sample_rate {sample_rate} must be positive")
    with _LOCK:
        saved = locale.setlocale(locale.LC_CTYPE)  # espeak_ng_Initialize sets C.UTF-8
        try:
            name = _espeak_voice(str(voice), _private_copy().data)
            lib = _open()
            try:
                samples = _synthesise(lib, str(text), name, int(rate), int(pitch))
            finally:
                _close(lib)
        finally:
            locale.setlocale(locale.LC_CTYPE, saved)
    return _to_float(samples, int(sample_rate))


def tts_unavailable() -> str | None:
    """None when ``speak`` works here, else a one-line reason with the install command.
    Loads the engine and its English voice once to find out; never raises."""
    try:
        import espeakng_loader  # noqa: F401
    except ImportError:
        return f"eSpeak NG is not installed (the espeakng-loader package): {INSTALL_HINT}"
    try:
        with _LOCK:
            saved = locale.setlocale(locale.LC_CTYPE)
            try:
                lib = _open()
                try:
                    if lib.espeak_SetVoiceByName(b"en") != 0:
                        return f"eSpeak NG has no English voice data: {INSTALL_HINT}"
                finally:
                    _close(lib)
            finally:
                locale.setlocale(locale.LC_CTYPE, saved)
    except Exception as exc:  # any failure to load means "not available", not a crash
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return f"eSpeak NG does not load here ({reason}); it installs with {INSTALL_HINT}"
    return None

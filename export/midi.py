"""A minimal standard MIDI file (SMF, format 0) writer and reader for piano rolls.

A piano roll is a {0, 1} array [T, 88]: frame t, note n is MIDI pitch 21 + n
(A0 .. C8, the paper's 88-key range). Each frame lasts one quarter note; a note
held over consecutive frames is one note (note-on at its first frame,
note-off after its last). The file has one track, a tempo event (default
120 quarter notes per minute, i.e. 0.5 s per frame) and `TICKS_PER_QUARTER`
ticks per quarter note. No dependency beyond NumPy.
"""

from __future__ import annotations

import pathlib
import struct

import numpy as np

__all__ = ["LOWEST_PITCH", "TICKS_PER_QUARTER", "DEFAULT_TEMPO_BPM", "piano_roll_to_midi_bytes",
           "write_midi", "midi_bytes_to_piano_roll", "read_midi"]

LOWEST_PITCH = 21  # A0: roll column 0
TICKS_PER_QUARTER = 480
DEFAULT_TEMPO_BPM = 120.0
VELOCITY = 80


def _varlen(value: int) -> bytes:
    """MIDI variable-length quantity: 7 bits per byte, high bit set on all but the last."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _note_events(roll: np.ndarray):
    """(frame, is_on, pitch) events of a [T, 88] roll, note-offs before note-ons at a frame."""
    padded = np.concatenate([np.zeros((1, roll.shape[1]), np.int8), roll.astype(np.int8),
                             np.zeros((1, roll.shape[1]), np.int8)])
    change = np.diff(padded, axis=0)  # [T + 1, 88]: +1 note starts at frame t, -1 ends before t
    events = [(t, 0, LOWEST_PITCH + n) for t, n in zip(*np.nonzero(change < 0))]
    events += [(t, 1, LOWEST_PITCH + n) for t, n in zip(*np.nonzero(change > 0))]
    return sorted(events)


def piano_roll_to_midi_bytes(roll, tempo_bpm: float = DEFAULT_TEMPO_BPM) -> bytes:
    """The SMF bytes of a {0, 1} piano roll [T, 88], one quarter note per frame."""
    roll = np.asarray(roll)
    if roll.ndim != 2 or roll.shape[1] != 88 or not np.isin(roll, (0, 1)).all():
        raise ValueError(f"expected a {{0, 1}} piano roll [T, 88], got shape {roll.shape}")
    track = bytearray()
    micros = int(round(60_000_000 / tempo_bpm))
    track += _varlen(0) + b"\xff\x51\x03" + micros.to_bytes(3, "big")  # set tempo
    last_tick = 0
    for frame, is_on, pitch in _note_events(roll):
        tick = int(frame) * TICKS_PER_QUARTER
        status = 0x90 if is_on else 0x80
        track += _varlen(tick - last_tick) + bytes([status, int(pitch), VELOCITY if is_on else 0])
        last_tick = tick
    end_tick = len(roll) * TICKS_PER_QUARTER
    track += _varlen(end_tick - last_tick) + b"\xff\x2f\x00"  # end of track at the end of the roll
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_QUARTER)
    return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


def write_midi(path, roll, tempo_bpm: float = DEFAULT_TEMPO_BPM) -> pathlib.Path:
    """Write a piano roll [T, 88] as a standard MIDI file; returns the path."""
    path = pathlib.Path(path)
    path.write_bytes(piano_roll_to_midi_bytes(roll, tempo_bpm))
    return path


def midi_bytes_to_piano_roll(data: bytes) -> tuple[np.ndarray, float]:
    """(roll uint8 [T, 88], tempo in quarter notes per minute) of SMF bytes written by
    `piano_roll_to_midi_bytes` (any format-0/1 file whose notes start on quarter notes).

    T = the end-of-track time in quarter notes. Notes outside the 88 keys are dropped.
    """
    if data[:4] != b"MThd":
        raise ValueError("not a standard MIDI file (no MThd header)")
    _, _, num_tracks, division = struct.unpack(">IHHH", data[4:14])
    pos, notes, tempo, end = 14, [], DEFAULT_TEMPO_BPM, 0
    for _ in range(num_tracks):
        if data[pos:pos + 4] != b"MTrk":
            raise ValueError("malformed MIDI file: expected MTrk")
        (length,) = struct.unpack(">I", data[pos + 4:pos + 8])
        pos, stop, tick, running, active = pos + 8, pos + 8 + length, 0, None, {}
        while pos < stop:
            delta = 0
            while True:
                byte = data[pos]
                pos += 1
                delta = (delta << 7) | (byte & 0x7F)
                if byte < 0x80:
                    break
            tick += delta
            status = data[pos]
            if status == 0xFF:
                kind, size = data[pos + 1], data[pos + 2]
                if kind == 0x51:
                    tempo = 60_000_000 / int.from_bytes(data[pos + 3:pos + 3 + size], "big")
                pos += 3 + size
                continue
            if status >= 0x80:
                running, pos = status, pos + 1
            pitch, velocity = data[pos], data[pos + 1]
            pos += 2
            if running & 0xF0 == 0x90 and velocity > 0:
                active[pitch] = tick
            elif running & 0xF0 in (0x80, 0x90) and pitch in active:
                notes.append((pitch, active.pop(pitch), tick))
        end = max(end, tick)
        pos = stop
    frames = -(-end // division)
    roll = np.zeros((frames, 88), np.uint8)
    for pitch, start, stop_tick in notes:
        if LOWEST_PITCH <= pitch < LOWEST_PITCH + 88:
            roll[start // division:-(-stop_tick // division), pitch - LOWEST_PITCH] = 1
    return roll, tempo


def read_midi(path) -> tuple[np.ndarray, float]:
    """`midi_bytes_to_piano_roll` of a file."""
    return midi_bytes_to_piano_roll(pathlib.Path(path).read_bytes())

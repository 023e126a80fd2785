"""The piano-roll MIDI writer round-trips, and writes files other readers agree with."""

import numpy as np
import pytest

from export import midi


def random_roll(seed, steps=40):
    rng = np.random.default_rng(seed)
    roll = (rng.random((steps, 88)) < 0.08).astype(np.uint8)
    roll[5:12, 40] = 1  # a held note
    roll[0, 0] = roll[-1, 87] = 1  # the lowest and highest keys, first and last frames
    return roll


@pytest.mark.parametrize("seed", [0, 1])
def test_written_roll_reads_back_identical(tmp_path, seed):
    roll = random_roll(seed)
    path = midi.write_midi(tmp_path / "a.mid", roll, tempo_bpm=90)
    back, tempo = midi.read_midi(path)
    np.testing.assert_array_equal(back, roll)
    assert tempo == pytest.approx(90, rel=1e-4)


def test_held_notes_are_single_events_and_silence_keeps_length():
    roll = np.zeros((6, 88), np.uint8)
    roll[1:4, 39] = 1  # middle C (pitch 60) held for 3 quarter notes
    data = midi.piano_roll_to_midi_bytes(roll)
    assert data.count(bytes([0x90, 60, midi.VELOCITY])) == 1
    assert data.count(bytes([0x80, 60, 0])) == 1
    back, _ = midi.midi_bytes_to_piano_roll(data)
    assert back.shape == (6, 88)  # trailing silence kept by the end-of-track time
    np.testing.assert_array_equal(back, roll)


def test_invalid_rolls_are_rejected():
    with pytest.raises(ValueError, match="piano roll"):
        midi.piano_roll_to_midi_bytes(np.zeros((4, 87)))
    with pytest.raises(ValueError, match="piano roll"):
        midi.piano_roll_to_midi_bytes(np.full((4, 88), 2))


def test_mido_reads_the_same_notes(tmp_path):
    mido = pytest.importorskip("mido")
    roll = random_roll(2)
    path = midi.write_midi(tmp_path / "b.mid", roll)
    song = mido.MidiFile(path)
    assert song.ticks_per_beat == midi.TICKS_PER_QUARTER and song.type == 0
    assert song.length == pytest.approx(len(roll) * 0.5)  # 120 bpm: 0.5 s per frame
    tick, starts, ends = 0, [], []
    for message in song.tracks[0]:
        tick += message.time
        if message.type == "note_on" and message.velocity > 0:
            starts.append((tick // midi.TICKS_PER_QUARTER, message.note - midi.LOWEST_PITCH))
        elif message.type in ("note_off", "note_on"):
            ends.append(message)
    onsets = np.zeros_like(roll)
    for frame, note in starts:
        onsets[frame, note] = 1
    expected = roll & ~np.concatenate([np.zeros((1, 88), np.uint8), roll[:-1]])
    np.testing.assert_array_equal(onsets, expected)
    assert len(ends) == len(starts)

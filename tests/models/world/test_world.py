"""The procedural world: specs, rendering, captions and training samples."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from models.world import (
    ATTRIBUTES,
    PALETTES,
    SUBJECTS,
    WEATHERS,
    SceneSpec,
    all_specs,
    attribute_descriptions,
    caption,
    caption_parts,
    describe,
    heldout_phrases,
    render_clip,
    render_frame,
    sample_frames,
    sample_pairs,
)
from models.world.captions import synonyms, templates
from models.world.phrases import HELDOUT_TEMPLATES, SLOT_ATTRIBUTE, SYNONYMS, TRAIN_TEMPLATES
from models.world.spec import num_specs


def _specs(count: int, seed: int = 0) -> list[SceneSpec]:
    rng = np.random.default_rng(seed)
    return [SceneSpec.random(rng) for _ in range(count)]


def test_vocabularies_and_keys() -> None:
    assert len(SUBJECTS) >= 8 and len(PALETTES) >= 6 and len(WEATHERS) >= 4
    specs = list(all_specs())
    assert len(specs) == num_specs() == len(set(specs)) == len({s.key() for s in specs})
    for spec in specs[::37]:
        assert SceneSpec.from_key(spec.key()) == spec
    assert SceneSpec("ocean", "sunset").key() == "ocean/sunset/clear/calm/static"


@pytest.mark.parametrize(
    ("field", "value"), [("subject", "jungle"), ("palette", "teal"), ("weather", "hail"), ("pace", "x"), ("camera", "")]
)
def test_validation_names_the_bad_value(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"{field}.*'{value}'"):
        SceneSpec(**{field: value})
    with pytest.raises(ValueError):
        SceneSpec.from_key("ocean/noon")


def test_render_is_deterministic_per_seed() -> None:
    spec = SceneSpec("city", "night", "rain", "lively", "pan_left")
    a = render_clip(spec, 7, 3, start_frame=100)
    assert a.shape == (3, 128, 128, 3) and a.dtype == np.uint8
    assert np.array_equal(a, render_clip(spec, 7, 3, start_frame=100))
    assert np.array_equal(a[2], render_frame(spec, 7, 102))
    assert not np.array_equal(a[0], render_frame(spec, 8, 100))
    assert render_frame(spec, 7, 5, size=64).shape == (64, 64, 3)


def test_consecutive_frames_move_smoothly() -> None:
    diffs = []
    for i, spec in enumerate(_specs(40)):
        clip = render_clip(spec, i, 4, start_frame=50 * i).astype(np.int16)
        assert clip[0].std() > 8, spec
        step = np.abs(np.diff(clip, axis=0)).mean(axis=(1, 2, 3))
        assert (step < 12).all(), (spec, step)
        diffs.append(step.mean())
        # a one-second jump changes more than one frame's step: motion is continuous
        far = np.abs(render_frame(spec, i, 50 * i + 24).astype(np.int16) - clip[0]).mean()
        assert far > step.mean(), spec
    assert np.mean(diffs) > 0.3
    assert min(diffs) > 0.02


def test_every_scene_moves() -> None:
    for spec in [SceneSpec(s, p) for s in SUBJECTS for p in ("noon", "night")]:
        a, b = render_frame(spec, 0, 10), render_frame(spec, 0, 34)
        assert np.abs(a.astype(np.int16) - b).mean() > 0.05, spec


def test_ten_minutes_in_is_still_valid() -> None:
    cameras = ("static", "pan_left", "pan_right", "zoom_in") * 2
    for s, p, w, c in zip(SUBJECTS, PALETTES * 2, WEATHERS * 2, cameras):
        spec = SceneSpec(s, p, w, "lively", c)
        frame = render_frame(spec, 3, 14_400)
        assert frame.shape == (128, 128, 3) and frame.std() > 8, spec
        nxt = render_frame(spec, 3, 14_401)
        assert 0 < np.abs(nxt.astype(np.int16) - frame).mean() < 12, spec


def _layout(image: np.ndarray) -> np.ndarray:
    grey = image.astype(np.float32).mean(-1).reshape(8, 16, 8, 16).mean((1, 3))
    return (grey - grey.mean()) / (grey.std() + 1e-6)


@pytest.mark.parametrize("weather", WEATHERS)
def test_palettes_and_subjects_are_distinct(weather: str) -> None:
    frames = {(s, p): render_frame(SceneSpec(s, p, weather), 0, 30) for s in SUBJECTS for p in PALETTES}
    for s in SUBJECTS:  # palettes differ in mean colour by > 10/255 in some channel
        means = {p: frames[s, p].reshape(-1, 3).mean(0) for p in PALETTES}
        for a, b in itertools.combinations(PALETTES, 2):
            assert np.abs(means[a] - means[b]).max() > 10, (s, a, b, weather)
    for p in PALETTES:  # subjects differ in normalised 8x8 luminance layout
        layouts = {s: _layout(frames[s, p]) for s in SUBJECTS}
        for a, b in itertools.combinations(SUBJECTS, 2):
            assert np.abs(layouts[a] - layouts[b]).mean() > 0.15, (a, b, p, weather)


def test_heldout_phrasings_never_match_train() -> None:
    assert not set(TRAIN_TEMPLATES) & set(HELDOUT_TEMPLATES)
    assert len(TRAIN_TEMPLATES) >= 40 and len(HELDOUT_TEMPLATES) >= 24
    rng = np.random.default_rng(0)
    for spec in _specs(30, seed=1):
        train = {caption(spec, rng, "train") for _ in range(300)}
        heldout = {caption(spec, rng, "heldout") for _ in range(300)}
        assert len(train) > 100 and len(heldout) > 100
        assert not train & heldout, train & heldout


def _phrases_by_attribute(split_index: int) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for slot, table in SYNONYMS.items():
        for pair in table.values():
            out.setdefault(SLOT_ATTRIBUTE[slot], set()).update(pair[split_index])
    return out


def test_no_training_phrasing_contains_a_heldout_phrase() -> None:
    """A held-out phrase tucked inside training text ("sahara dunes", "alpine summits", a template saying
    "relaxing") would leak it into training; so would a held-out compound word ("lava-spewing")."""
    train, heldout = _phrases_by_attribute(0), _phrases_by_attribute(1)
    every_heldout = set().union(*heldout.values())
    leaks = []
    for attr, phrases in train.items():
        for held in heldout[attr]:
            pieces = [held, *(word for word in held.split() if "-" in word)]
            patterns = [re.compile(rf"\b{re.escape(piece)}s?\b") for piece in pieces]
            leaks += [(attr, held, p) for p in phrases if any(pattern.search(p) for pattern in patterns)]
    for template in TRAIN_TEMPLATES:
        leaks += [
            ("template", held, template) for held in every_heldout if re.search(rf"\b{re.escape(held)}\b", template)
        ]
    assert not leaks, leaks


def test_training_vocabulary_is_wide() -> None:
    """Many wordings per subject and palette, so that new ones land near known ones."""
    for attr in ("subject", "palette"):
        assert all(len(synonyms(attr, value)) >= 30 for value in ATTRIBUTES[attr]), attr
    assert len(TRAIN_TEMPLATES) >= 100


def test_captions_name_every_attribute_value() -> None:
    rng = np.random.default_rng(0)
    everything = tuple(a for a in ATTRIBUTES if a not in ("subject", "palette"))
    for split in ("train", "heldout"):
        for spec in _specs(60, seed=2):
            text = caption(spec, rng, split, mention=everything).lower()
            for attr in ATTRIBUTES:
                value = getattr(spec, attr)
                assert any(word.lower() in text for word in synonyms(attr, value, split)), (attr, value, text)
    seen = {attr: set() for attr in ATTRIBUTES}
    for spec in _specs(400, seed=3):
        text = caption(spec, rng, "train").lower()
        for attr in ("subject", "palette"):
            if any(w.lower() in text for w in synonyms(attr, getattr(spec, attr))):
                seen[attr].add(getattr(spec, attr))
    assert seen["subject"] == set(SUBJECTS) and seen["palette"] == set(PALETTES)
    with pytest.raises(ValueError, match="split"):
        caption(SceneSpec(), rng, "test")
    with pytest.raises(ValueError, match="colour"):
        templates("train", frozenset({"colour"}))


def test_captions_can_leave_attributes_unnamed_without_changing_the_random_draws() -> None:
    spec = SceneSpec("forest", "night", "rain")
    subject_words = set(synonyms("subject", "forest"))
    for seed in range(40):
        named, plain = np.random.default_rng(seed), np.random.default_rng(seed)
        text, parts = caption_parts(spec, named, omit=("subject",))
        full, full_parts = caption_parts(spec, plain)
        assert named.random() == plain.random()  # the same draws: other captions of a run stay as they were
        assert full_parts["s"] in full.lower() and full_parts["s"] not in text.lower(), (full, text)
        assert not any(f" {w} " in f" {text.lower()} " for w in subject_words if " " in w), text
        assert "  " not in text and " ," not in text and text.strip() == text and text
        assert parts == {slot: phrase for slot, phrase in full_parts.items() if slot != "s"}  # what it did name
    assert caption_parts(spec, np.random.default_rng(0), omit=tuple(ATTRIBUTES))[0]  # never empty
    with pytest.raises(ValueError, match="colour"):
        caption_parts(spec, np.random.default_rng(0), omit=("colour",))


def test_describe_and_attribute_descriptions() -> None:
    assert describe(SceneSpec("ocean", "sunset")) == "a calm ocean at sunset, in clear weather, static camera"
    table = attribute_descriptions()
    assert set(table) == set(ATTRIBUTES)
    for attr, vocabulary in ATTRIBUTES.items():
        assert set(table[attr]) == set(vocabulary)
        assert all(len(d) >= 2 and all(isinstance(x, str) and x for x in d) for d in table[attr].values())


def test_samples_are_deterministic_consecutive_pairs() -> None:
    prev, cur, captions, specs = sample_pairs(np.random.default_rng(5), 6)
    assert prev.shape == cur.shape == (6, 128, 128, 3) and prev.dtype == np.uint8
    assert len(captions) == len(specs) == 6 and all(isinstance(c, str) and c for c in captions)
    again = sample_pairs(np.random.default_rng(5), 6)
    assert np.array_equal(prev, again[0]) and np.array_equal(cur, again[1]) and captions == again[2]
    step = np.abs(prev.astype(np.int16) - cur).mean(axis=(1, 2, 3))
    assert (step < 12).all()
    frames = sample_frames(np.random.default_rng(5), 5, size=64)
    assert frames.shape == (5, 64, 64, 3)
    assert np.array_equal(frames, sample_frames(np.random.default_rng(5), 5, size=64))


def test_a_validation_fold_keeps_training_phrases_out_and_reads_them_in_its_heldout_captions() -> None:
    from models.world.vocabulary import FOLD_SLOTS, WORLD

    fold = WORLD.fold(0.2, seed=0)
    assert fold.heldout_templates == WORLD.train_templates
    world_heldout = set().union(*(pair[1] for table in SYNONYMS.values() for pair in table.values()))
    kept_out = 0
    for slot, table in fold.synonyms.items():
        for value, (train, heldout) in table.items():
            world_train = WORLD.synonyms[slot][value][0]
            assert train[0] == world_train[0]  # the canonical words always stay in training
            assert sorted((*train, *heldout)) == sorted(world_train) if slot in FOLD_SLOTS else not heldout
            kept_out += len(heldout)
    assert 0.1 < kept_out / sum(len(WORLD.synonyms[s][v][0]) for s in FOLD_SLOTS for v in WORLD.synonyms[s]) < 0.3
    assert WORLD.fold(0.2, seed=0).synonyms == fold.synonyms and WORLD.fold(0.2, seed=1).synonyms != fold.synonyms
    rng = np.random.default_rng(0)
    used = []
    for spec in _specs(200, seed=3):
        text, parts = caption_parts(spec, rng, split="heldout", vocabulary=fold)
        assert not set(parts.values()) & world_heldout, text  # the evaluation's held-out words never appear
        used.append(heldout_phrases(spec, parts, vocabulary=fold))
        assert set(used[-1]) <= {"subject", "palette"}
    assert 0.3 < np.mean([bool(u) for u in used]) < 0.9

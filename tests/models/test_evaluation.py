"""Behaviour of the attribute probe and of `pixelcast eval model` (quick mode, shipped model)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from models import default_model_path
from models.card import EVALUATION_FILE, TRAINING_FILE, missed_phrases, write_model_card
from models.evaluation.probe import (
    PROBE_ATTRIBUTES,
    AttributeProbe,
    chance,
    load_if_current,
    load_or_train_probe,
    render_examples,
    shipped_probe_path,
)
from models.world import ATTRIBUTES
from models.world.captions import synonyms
from streamer.cli import main as cli_main

pytestmark = pytest.mark.slow  # evaluates the shipped model


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """None when a usable probe is shipped (the eval finds it), else a folder with a quickly trained one."""
    if load_if_current(shipped_probe_path()) is not None:
        return None
    folder = tmp_path_factory.mktemp("probe")
    load_or_train_probe(folder, quick=True, progress=False)
    return folder


@pytest.fixture(scope="module")
def probe(probe_dir: Path | None) -> AttributeProbe:
    return AttributeProbe.load(probe_dir or shipped_probe_path())


def test_probe_reads_real_renders_well_above_chance(probe: AttributeProbe) -> None:
    frames, specs = render_examples(seed=424242, scenes=60, frames_per_scene=1, progress=False)
    acc = probe.accuracy(frames, specs)
    floor = chance()
    assert acc["subject"] > 0.6
    assert acc["palette"] > 0.6
    assert acc["weather"] > floor["weather"] + 0.2
    assert acc["subject+palette"] > 10 * floor["subject+palette"]


def test_probe_predicts_vocabulary_values_and_round_trips(probe: AttributeProbe, tmp_path: Path) -> None:
    frames, _ = render_examples(seed=7, scenes=5, frames_per_scene=1, progress=False)
    predicted = probe.predict(frames)
    assert set(predicted) == set(PROBE_ATTRIBUTES)
    for name, values in predicted.items():
        assert len(values) == len(frames)
        assert set(values) <= set(ATTRIBUTES[name])
    probe.save(tmp_path)
    assert sum(f.stat().st_size for f in tmp_path.iterdir()) < 1_000_000
    assert AttributeProbe.load(tmp_path).predict(frames) == predicted


def _probabilities(node: object) -> list[float]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k in (*PROBE_ATTRIBUTES, "subject+palette") and isinstance(v, float)] + [
            p for v in node.values() for p in _probabilities(v)
        ]
    return []


def test_eval_model_quick_writes_every_section(probe_dir: Path | None, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    argv = ["eval", "model", "--quick", "--json", str(out)]
    if probe_dir is not None:
        argv += ["--probe", str(probe_dir)]
    assert cli_main(argv) == 0
    report = json.loads(out.read_text())
    for section in ("machine", "model", "probe", "adherence", "flicker", "drift", "transition", "targets"):
        assert section in report, section

    adherence = report["adherence"]
    for split in ("heldout", "train", "ceiling", "ceiling_through_autoencoder", "chance"):
        values = adherence[split]["accuracy"] if split in ("heldout", "train") else adherence[split]
        assert set(values) == {*PROBE_ATTRIBUTES, "subject+palette"}
    probabilities = _probabilities(adherence)
    assert len(probabilities) >= 5 * 4
    assert all(0.0 <= p <= 1.0 for p in probabilities)
    assert adherence["chance"]["subject"] == pytest.approx(1 / len(ATTRIBUTES["subject"]), abs=1e-4)
    assert adherence["chance"]["palette"] == pytest.approx(1 / len(ATTRIBUTES["palette"]), abs=1e-4)
    assert adherence["chance"]["weather"] == pytest.approx(1 / len(ATTRIBUTES["weather"]), abs=1e-4)
    assert adherence["chance"]["subject+palette"] == pytest.approx(1 / 48, abs=1e-4)
    assert adherence["ceiling"]["subject"] > adherence["chance"]["subject"]

    # the shipped grounder: the same held-out captions streamed without it, and its own reading of them
    ungrounded = adherence["heldout_ungrounded"]
    assert set(ungrounded["accuracy"]) == {*PROBE_ATTRIBUTES, "subject+palette"}
    assert 0.0 <= adherence["heldout_ungrounded_joint_vs_ceiling"] <= 1.0
    examples = list(zip(ungrounded["example_captions"], adherence["heldout"]["example_captions"], strict=True))
    assert all(grounded.endswith(raw) for raw, grounded in examples)  # the viewer's words are all there
    assert any(len(grounded) > len(raw) for raw, grounded in examples)
    text_only = adherence["heldout"]["grounder_text_accuracy"]
    assert set(text_only) == {"subject", "palette", "weather", "subject+palette"}
    assert all(0.0 <= v <= 1.0 for v in text_only.values())
    # the held-out streams split by whether the grounder read both right and surely: the parts add up
    groups = adherence["heldout"]["by_grounder_reading"].values()
    assert sum(g["share"] for g in groups) == pytest.approx(1.0, abs=1e-3)
    weighted = sum(g["share"] * (g["joint"] or 0.0) for g in groups)
    assert weighted == pytest.approx(adherence["heldout"]["accuracy"]["subject+palette"], abs=2e-3)

    # which held-out words the model follows: each tallied phrase is a held-out one for its attribute
    tallied = adherence["heldout"]["phrases"]
    assert sum(f["streams"] for per in tallied.values() for f in per.values()) >= 1
    for attr, per_phrase in tallied.items():
        heldout_only = {p for v in ATTRIBUTES[attr] for p in synonyms(attr, v, "heldout")} - {
            p for v in ATTRIBUTES[attr] for p in synonyms(attr, v)
        }
        assert set(per_phrase) <= heldout_only, attr
        assert all(f["streams"] >= 1 and 0.0 <= f["followed"] <= 1.0 for f in per_phrase.values())
    _card_names_the_missed_phrases(report, tmp_path / "card")

    flicker = report["flicker"]
    assert flicker["world_mean_abs_change"] > 0
    expected_ratio = flicker["generated_mean_abs_change"] / flicker["world_mean_abs_change"]
    assert flicker["ratio"] == pytest.approx(expected_ratio, rel=0.01, abs=1e-3)  # reported to 3 decimals

    detail = adherence["detail"]  # blur shows here: a frame with no edges would read 0
    assert detail["world_edge_energy"] > 0 and detail["generated_edge_energy"] > 0
    assert detail["ratio"] == pytest.approx(detail["generated_edge_energy"] / detail["world_edge_energy"], rel=0.01)

    drift = report["drift"]
    for window in ("first", "last"):
        assert all(0.0 <= p <= 1.0 for p in drift[window]["accuracy"].values())
    assert -100.0 <= drift["drift_points"] <= 100.0
    assert drift["rollout_frames"] > 2 * drift["frames_probed_per_window"]

    transition = report["transition"]
    assert transition["pairs"] == len(transition["per_pair"]) >= 1
    assert 0.0 <= transition["new_subject_recognised_rate"] <= 1.0
    assert transition["mean_spike_ratio"] > 0
    assert all(p["from"].split("/")[0] != p["to"].split("/")[0] for p in transition["per_pair"])

    hold = report["hold"]
    assert hold["streams"] >= 1 and hold["after"]
    for row in hold["after"].values():
        # a still picture of a moving world is close to it but not identical; generated frames are frames
        assert 10.0 < row["still_picture_psnr_db"] < 100.0
        assert 5.0 < row["generated_psnr_db"] < 100.0
        # averaging cells away the world's fine motion leaves a still picture nearer the world
        assert row["still_picture_coarse_psnr_db"] > row["still_picture_psnr_db"]
        assert row["generated_coarse_psnr_db"] > 5.0 and row["detail_ratio"] > 0.0

    _fidelity_is_measured_against_the_world(report["fidelity"], out)

    assert set(report["targets"]) == {
        "adherence_heldout_vs_ceiling",
        "drift_points",
        "flicker_ratio",
        "hold_vs_still_picture",
        "fidelity_layout_psnr_db",
        "fidelity_sharpness_ratio",
        "fidelity_change_ratio",
    }
    for target in report["targets"].values():
        assert isinstance(target["pass"], bool)
    assert np.isfinite(report["seconds"]["total"])


def _fidelity_is_measured_against_the_world(fidelity: dict, report_path: Path) -> None:
    """Every pair has its figures at every time; the baselines sit where a world frame and its round trip do."""
    times = list(fidelity["overall"])
    assert len(times) == 2 and fidelity["pairs"] == len(fidelity["per_pair"]) == 2
    for rows in (fidelity["overall"], *fidelity["per_pair"].values()):
        assert list(rows) == times
        for row in rows.values():
            assert 5.0 < row["layout_psnr_db"] < 100.0
            assert row["sharpness_ratio"] > 0.0 and row["change_ratio"] >= 0.0
    # the world's own frames at another moment are near its reference; the autoencoder loses a little
    assert fidelity["world"]["layout_psnr_db"] > fidelity["autoencoder_round_trip"]["layout_psnr_db"] > 15.0
    assert fidelity["world"]["mean_abs_change"] > 0.0
    assert 5.0 < fidelity["teacher_forced"]["layout_psnr_db"] < 100.0
    # the scene's layouts averaged and decoded: a blurred picture of the scene, short of the world's own frames
    assert 10.0 < fidelity["layout_average"]["layout_psnr_db"] < fidelity["world"]["layout_psnr_db"]
    assert 0.0 < fidelity["layout_average"]["sharpness_ratio"]
    sheet = report_path.with_name(f"{report_path.stem}-contact-sheet.png")
    assert fidelity["contact_sheet"] == sheet.name
    from PIL import Image

    with Image.open(sheet) as image:  # one strip per pair: the world and the stream at each time
        assert image.width >= 64 * (1 + len(times)) and image.height >= 64


def _card_names_the_missed_phrases(report: dict, folder: Path) -> None:
    """The model card lists exactly the held-out phrases the evaluation found missed."""
    folder.mkdir()
    shutil.copy(default_model_path() / TRAINING_FILE, folder / TRAINING_FILE)
    (folder / EVALUATION_FILE).write_text(json.dumps(report))
    card = write_model_card(folder).read_text()
    assert f"against {report['adherence']['detail']['world_edge_energy']} in the world's renders" in card
    first_hold = next(iter(report["hold"]["after"].values()))
    assert f"{first_hold['generated_psnr_db']} dB (a still picture of the first frame" in card
    cell = report["hold"]["cell_pixels"]
    assert f"layout alone ({cell}-pixel cell means) {first_hold['generated_coarse_psnr_db']} dB" in card
    assert f"edge energy {first_hold['detail_ratio']:.0%} of the world's" in card
    sure = report["adherence"]["heldout"]["by_grounder_reading"]["both_named_right_and_sure"]
    assert f"surely enough to add their words ({100 * sure['share']:.1f}% of the" in card
    last = list(report["fidelity"]["overall"])[-1]
    assert f"| stream, {last} after the start | {report['fidelity']['overall'][last]['layout_psnr_db']} |" in card
    missed = missed_phrases(report)
    for per_phrase in report["adherence"]["heldout"]["phrases"].values():
        for phrase in per_phrase:
            assert (f'"{phrase}"' in card) == (phrase in missed), phrase
    # a phrase the tally marks as never followed in three streams is named with its figures
    per_phrase = next(per for per in report["adherence"]["heldout"]["phrases"].values() if per)
    phrase = next(iter(per_phrase))
    per_phrase[phrase] = {"streams": 3, "followed": 0.0}
    (folder / EVALUATION_FILE).write_text(json.dumps(report))
    assert f'"{phrase}" (0% of 3 streams)' in write_model_card(folder).read_text()


def test_eval_grounder_fits_on_a_fold_and_reports_how_it_reads_the_kept_out_phrases(tmp_path: Path) -> None:
    out = tmp_path / "fold.json"
    command = ["eval", "grounder", "--quick", "--work-dir", str(tmp_path / "work"), "--json", str(out)]
    assert cli_main(command) == 0
    report = json.loads(out.read_text())
    assert report["captions"] == 100 and 0 < report["captions_using_kept_out"] < 100
    assert report["kept_out_phrases"] > 50
    assert all(0.0 <= share <= 1.0 for share in report["right_and_said"].values())
    for attr, per_phrase in report["phrases"].items():  # each kept-out phrase, worst read first
        rows = list(per_phrase.values())
        assert [row["right"] for row in rows] == sorted(row["right"] for row in rows)
        assert all((row["misread_as"] is None) == (row["right"] == 1.0) for row in rows)
        # the per-phrase table adds up to the headline share
        read_right = sum(row["right"] * row["captions"] for row in rows) / sum(row["captions"] for row in rows)
        assert read_right == pytest.approx(report["right_and_said"][attr], abs=0.01)
    assert report["grounder_settings"]["grounder_own_match_only"] is True
    assert cli_main([*command, "--set", "grounder_own_match_only=false"]) == 0
    assert json.loads(out.read_text())["grounder_settings"]["grounder_own_match_only"] is False


def test_eval_grounder_refuses_settings_it_cannot_use(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["eval", "grounder", "--quick", "--set", "unet_steps=3"]) == 2
    assert "expected NAME=VALUE with NAME one of" in capsys.readouterr().out
    assert cli_main(["eval", "grounder", "--quick", "--set", "grounder_own_match_only=maybe"]) == 2
    assert "expected true or false" in capsys.readouterr().out
    assert cli_main(["eval", "grounder", "--quick", "--set", "grounder_steps=many"]) == 2
    assert "expected a number (int)" in capsys.readouterr().out
    assert cli_main(["eval", "grounder", "--quick", "--captions", "0"]) == 2
    assert "--captions must be at least 1" in capsys.readouterr().out

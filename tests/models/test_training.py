"""`pixelcast train` end to end on a tiny version of the recipe: a loadable folder, and resume works."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from models import StreamingEngine
from models.copying import COPY_OUTPUTS
from models.training.anchor import widen_for_anchor
from models.training.architecture import make_video_unet
from models.training.config import TrainConfig
from models.training.copy_head import widen_for_copy_head
from models.training.first_frames import StillBank, nearest_stills
from models.training.recipe import train

pytestmark = pytest.mark.slow  # trains a tiny recipe end to end


def _weights(folder: Path, part: str = "unet") -> dict[str, np.ndarray]:
    return load_file(next((folder / part).glob("*.safetensors")))


def _restarted(printed: str) -> set[str]:
    """The checkpoints a training run printed it could not resume (saved under another recipe)."""
    return {line.split(":")[0] for line in printed.splitlines() if "saved under another recipe" in line}


def test_quick_recipe_writes_a_streamable_folder_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = TrainConfig(seed=3).quick()
    out, work = tmp_path / "model", tmp_path / "work"
    summary = train(config, out, work, threads=1)
    card = (out / "README.md").read_text()
    assert card.startswith("# Pixelcast world model") and "on the CPU" in card
    assert summary["size_mb"] < 25
    engine = StreamingEngine.from_pretrained(out, steps=1)
    frame = engine.generate([(engine.new_stream(0), engine.encode_prompt("an ocean at noon"))])[0]
    assert frame.shape == (128, 128, 3)
    assert engine.prompts.grounding and engine.grounded_prompt("sand dunes at noon").endswith("sand dunes at noon")

    assert engine.camera is not None and "4b. Camera reader" in card  # its UNet takes an anchor
    first, first_grounder, first_camera = _weights(out), _weights(out, "grounder"), _weights(out, "camera")
    again = train(config, tmp_path / "model-again", work, threads=1)  # every stage resumes from its checkpoint
    assert again["denoiser"]["final_loss"] == summary["denoiser"]["final_loss"]
    assert again["rollout"]["final_loss"] == summary["rollout"]["final_loss"] and summary["rollout"]["loss_curve"]
    assert again["first_frames"] == summary["first_frames"] and summary["first_frames"]["loss_curve"]
    assert again["settle"] == summary["settle"] and summary["settle"]["loss_curve"]
    assert again["pin"] == summary["pin"] and summary["pin"]["loss_curve"]
    assert again["anchor"] == summary["anchor"] and summary["anchor"]["loss_curve"]
    assert engine.takes_anchor and "3g. The anchor" in card
    assert again["copy_head"] == summary["copy_head"] and summary["copy_head"]["loss_curve"]
    assert engine.copy_head and "3h. The copy head" in card
    assert again["own_decoder"] == summary["own_decoder"] and set(summary["own_decoder"]) == {
        "psnr_db",
        "edge_energy_ratio",
    }
    assert again["sharpen"] == summary["sharpen"] and set(summary["sharpen"]) == {
        "mse",
        "adversarial",
        "critic",
        "anchor",
    }
    for name, value in _weights(tmp_path / "model-again").items():
        np.testing.assert_array_equal(value, first[name])
    for name, value in _weights(tmp_path / "model-again", "grounder").items():
        np.testing.assert_array_equal(value, first_grounder[name])
    for name, value in _weights(tmp_path / "model-again", "camera").items():
        np.testing.assert_array_equal(value, first_camera[name])

    # a changed recipe does not resume a run it would not reproduce; stages it does not touch still resume
    capsys.readouterr()
    train(replace(config, unet_steps=config.unet_steps + 2), tmp_path / "model-longer", work, threads=1)
    printed = capsys.readouterr().out
    assert "denoiser.pt: saved under another recipe" in printed
    assert "autoencoder.pt" not in printed and "clip_bank.pt" not in printed  # their recipes did not change
    assert "decoder.pt" not in _restarted(printed)
    assert "own_decoder.pt" in _restarted(printed)  # it learns the new denoiser's latents
    capsys.readouterr()
    sharper = replace(config, unet_steps=config.unet_steps + 2, sharpen_weight=config.sharpen_weight * 2)
    train(sharper, tmp_path / "model-sharper", work, threads=1)
    printed = capsys.readouterr().out
    assert "sharpen.pt: saved under another recipe" in printed
    assert "denoiser.pt" not in printed  # sharpening starts from the trained denoiser, which is kept
    capsys.readouterr()
    checkpointed_more = replace(sharper, checkpoint_every=3)
    train(checkpointed_more, tmp_path / "model-bookkeeping", work, threads=1)
    assert "saved under another recipe" not in capsys.readouterr().out  # bookkeeping is not the recipe
    drifting_streams = replace(checkpointed_more, noise_drift_inference=0.5, new_prompt_steps_inference=2)
    train(drifting_streams, tmp_path / "model-drifting", work, threads=1)
    assert "saved under another recipe" not in capsys.readouterr().out  # settings for streams, not the recipe
    noisier_streams = replace(drifting_streams, context_noise_inference=config.context_noise_inference * 2)
    train(noisier_streams, tmp_path / "model-noisier", work, threads=1)
    printed = capsys.readouterr().out  # sharpening noises its own first frames as streams do: its recipe
    assert "sharpen.pt: saved under another recipe" in printed and "denoiser.pt" not in printed
    assert "rollout.pt: saved under another recipe" in printed  # it goes on from the sharpened denoiser
    assert "decoder.pt" not in _restarted(printed)  # the edge stage does not see the denoiser
    capsys.readouterr()
    own_frames = replace(noisier_streams, rollout_own_share=0.5)
    train(own_frames, tmp_path / "model-own", work, threads=1)
    printed = capsys.readouterr().out
    assert "rollout.pt: saved under another recipe" in printed and "sharpen.pt" not in printed
    assert "first_frames.pt: saved under another recipe" in printed  # it goes on from the rolled-out denoiser
    more_first_frames = replace(own_frames, first_frames_share=0.6)
    train(more_first_frames, tmp_path / "model-first", work, threads=1)
    printed = capsys.readouterr().out
    assert "first_frames.pt: saved under another recipe" in printed
    assert "settle.pt: saved under another recipe" in printed  # it goes on from the first-frames denoiser
    assert "pin.pt: saved under another recipe" in printed  # and pinning from the settled one
    assert "own_latents.pt: saved under another recipe" in printed  # streams of the new denoiser
    assert "rollout.pt" not in printed and "stills.pt" not in printed  # the stills are of the same clips
    assert "pinned.pt" not in printed
    pinned_longer = replace(more_first_frames, pin_moments=3)
    train(pinned_longer, tmp_path / "model-pinned", work, threads=1)
    printed = capsys.readouterr().out
    assert {"pinned.pt", "pin.pt", "own_latents.pt", "own_decoder.pt", "anchor.pt", "copy.pt"} <= _restarted(printed)
    assert "settle.pt" not in printed and "stills.pt" not in printed  # pinning goes on from the settled denoiser
    anchored_longer = replace(pinned_longer, anchor_steps=config.anchor_steps + 2)
    train(anchored_longer, tmp_path / "model-anchored", work, threads=1)
    printed = capsys.readouterr().out
    assert _restarted(printed) == {"anchor.pt", "copy.pt"}  # the copy head goes on from the anchored denoiser
    copied_longer = replace(anchored_longer, copy_steps=config.copy_steps + 2)
    longer = train(copied_longer, tmp_path / "model-copied", work, threads=1)
    printed = capsys.readouterr().out
    assert not _restarted(printed)  # a longer copy stage goes on from the shorter one's checkpoint
    assert len(longer["copy_head"]["loss_curve"]) == config.copy_steps + 2
    more_captions = replace(pinned_longer, grounder_captions=config.grounder_captions + 8)
    train(more_captions, tmp_path / "model-grounded", work, threads=1)
    printed = capsys.readouterr().out
    assert "grounder.pt: saved under another recipe" in printed
    assert "denoiser.pt" not in printed and "sharpen.pt" not in printed  # text-only: the UNet stages are kept


def test_a_run_from_a_trained_folder_trains_only_the_stages_it_lacks_and_refuses_another_recipe(
    tmp_path: Path,
) -> None:
    config = TrainConfig(seed=5).quick()
    unanchored = replace(config, anchor_steps=0)
    base = tmp_path / "base"
    train(unanchored, base, tmp_path / "work-base", threads=1)
    assert not StreamingEngine.from_pretrained(base).takes_anchor
    summary = train(config, tmp_path / "anchored", tmp_path / "work", threads=1, base=base)
    assert summary["anchor"]["loss_curve"] and summary["copy_head"]["loss_curve"]
    assert "trained the anchor and the copy head" in summary["base"]
    made = {"clip_bank.pt", "pinned.pt", "anchor.pt", "long_clips.pt", "copy.pt", "camera.pt"}
    assert {p.name for p in (tmp_path / "work").iterdir()} == made
    kept = _weights(base, "grounder")
    for name, value in _weights(tmp_path / "anchored", "grounder").items():
        np.testing.assert_array_equal(value, kept[name])
    assert StreamingEngine.from_pretrained(tmp_path / "anchored").copy_head
    with pytest.raises(ValueError, match="another recipe .*pin_steps"):
        train(replace(config, pin_steps=5), tmp_path / "other", tmp_path / "work", threads=1, base=base)
    # settings for streams do not change the weights a base stands for: they go into the new pipeline
    steered = replace(config, new_prompt_steps_inference=2)
    train(steered, tmp_path / "steered", tmp_path / "work", threads=1, base=base)
    assert StreamingEngine.from_pretrained(tmp_path / "steered").new_prompt_steps == 2
    with pytest.raises(ValueError, match="already has a copy head"):
        train(config, tmp_path / "twice", tmp_path / "work", threads=1, base=tmp_path / "anchored")

    # a folder trained to the anchor keeps it, and its anchor stage's figures: only the copy head trains
    anchored_only = tmp_path / "anchored-only"
    anchoring = train(replace(config, copy_steps=0), anchored_only, tmp_path / "work", threads=1, base=base)
    assert not StreamingEngine.from_pretrained(anchored_only).copy_head
    work = tmp_path / "work-copy"
    copied = train(config, tmp_path / "copied", work, threads=1, base=anchored_only)
    assert copied["base"].endswith("trained the copy head on them")  # the camera reader came with the folder
    assert not {"anchor.pt", "camera.pt"} & {p.name for p in work.iterdir()}
    assert copied["anchor"] == anchoring["anchor"] and copied["anchor"]["loss_curve"]
    assert StreamingEngine.from_pretrained(tmp_path / "copied").copy_head
    with pytest.raises(ValueError, match="another recipe .*anchor_steps"):
        train(replace(config, anchor_steps=5), tmp_path / "other", work, threads=1, base=anchored_only)


def test_widening_for_the_anchor_keeps_what_the_denoiser_computes() -> None:
    torch.manual_seed(0)
    unet = make_video_unet().eval()
    wide = widen_for_anchor(unet).eval()
    assert wide.config.in_channels == 12
    x = torch.randn(2, 8, 16, 16)
    anchor = torch.randn(2, 4, 16, 16)
    tokens, t = torch.randn(2, 5, 384), torch.tensor([999, 500])
    pooled = torch.nn.functional.normalize(torch.randn(2, 384), dim=-1)
    with torch.no_grad():
        before = unet(x, t, encoder_hidden_states=tokens, class_labels=pooled).sample
        after = wide(torch.cat([x, anchor], 1), t, encoder_hidden_states=tokens, class_labels=pooled).sample
    torch.testing.assert_close(after, before)


def test_a_copy_head_starts_as_the_drawing_it_was_given() -> None:
    """The widened UNet draws exactly what the anchored one did, and its mix starts nearly all on that drawing,
    with a kernel that nearly keeps each cell where it is."""
    torch.manual_seed(0)
    unet = widen_for_anchor(make_video_unet()).eval()
    wide = widen_for_copy_head(unet).eval()
    assert wide.config.out_channels == 4 + COPY_OUTPUTS
    x = torch.randn(2, 12, 16, 16)
    tokens, t = torch.randn(2, 5, 384), torch.tensor([999, 500])
    pooled = torch.nn.functional.normalize(torch.randn(2, 384), dim=-1)
    with torch.no_grad():
        before = unet(x, t, encoder_hidden_states=tokens, class_labels=pooled).sample
        after = wide(x, t, encoder_hidden_states=tokens, class_labels=pooled).sample
    torch.testing.assert_close(after[:, :4], before)
    weights, kernel = after[:, 4:7].softmax(1), after[:, 7:].softmax(1)
    assert weights[:, 0].min() > 0.9 and kernel[:, 4].min() > 0.9


def test_settling_aims_each_stream_at_the_still_of_its_scene_nearest_to_its_own_frame() -> None:
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(3, 5, 4, 16, 16, generator=generator).half()  # 3 scenes, 5 stills each
    stills = StillBank(latents=latents, canonical=torch.zeros(3, 2, 384).half())
    clips = np.array([2, 0, 2])
    picked = [4, 1, 0]
    own = torch.stack([latents[c, p].float() for c, p in zip(clips, picked)])
    own = own + 0.3 * torch.randn(own.shape, generator=generator)  # a blurred, noisy take on that still
    aimed = nearest_stills(stills, clips, own)
    for row, (clip, still) in enumerate(zip(clips, picked)):
        torch.testing.assert_close(aimed[row], latents[clip, still].float())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: training on one is checked there")
def test_training_on_a_gpu_sees_the_same_data_and_gets_the_same_kind_of_result(tmp_path: Path) -> None:
    config = TrainConfig(seed=5).quick()
    on_cpu = train(config, tmp_path / "cpu", tmp_path / "work-cpu", threads=1)
    on_gpu = train(config, tmp_path / "gpu", tmp_path / "work-gpu", threads=1, device="cuda")
    assert on_gpu["device"].startswith("cuda") and "on a GPU" in (tmp_path / "gpu" / "README.md").read_text()
    # the same batches from the same initial weights: the loss curves differ only by rounding
    np.testing.assert_allclose(on_gpu["denoiser"]["loss_curve"], on_cpu["denoiser"]["loss_curve"], rtol=0.05)
    engine = StreamingEngine.from_pretrained(tmp_path / "gpu", steps=1)  # saved for the CPU, loads anywhere
    assert engine.generate([(engine.new_stream(0), engine.encode_prompt("a desert at dusk"))])[0].shape == (128, 128, 3)


def test_a_new_training_phrase_changes_the_recipe_and_a_heldout_one_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    from models.world.phrases import SYNONYMS

    config = TrainConfig()
    bank, denoiser = config.clip_bank_recipe(), config.denoiser_recipe()
    train_phrases, heldout_phrases = SYNONYMS["s"]["ocean"]
    monkeypatch.setitem(SYNONYMS["s"], "ocean", (train_phrases, (*heldout_phrases, "the big blue")))
    assert config.clip_bank_recipe() == bank and config.denoiser_recipe() == denoiser
    monkeypatch.setitem(SYNONYMS["s"], "ocean", ((*train_phrases, "the big blue"), heldout_phrases))
    assert config.clip_bank_recipe() != bank  # old captions would be reused for the new vocabulary otherwise
    assert config.denoiser_recipe() != denoiser


def test_the_grounder_stage_embeds_each_text_once_and_reads_captions_as_if_embedded_together() -> None:
    from models.grounding import GrounderInputs
    from models.text import TextEncoder
    from models.training.grounder import _features, make_grounder, phrase_table, training_caption_set

    config = TrainConfig().quick()
    encoder = TextEncoder(cache_size=0)
    embedded: list[str] = []

    def counted(texts: list[str]) -> torch.Tensor:
        embedded.extend(texts)
        return encoder.sentence_embeddings(texts)

    table = phrase_table()
    grounder = make_grounder(config, encoder.sentence_embeddings, table)
    captions = training_caption_set(config)
    chunked = _features(grounder, captions, table[0], counted, chunk=8)
    assert len(embedded) == len(set(embedded))  # runs that several chunks share went through MiniLM once
    together: GrounderInputs = _features(grounder, captions, table[0], encoder.sentence_embeddings, chunk=10_000)
    torch.testing.assert_close(chunked.prompts, together.prompts, atol=1e-5, rtol=0)
    for row in range(len(captions.texts)):
        mine, theirs = chunked.run_index[row], together.run_index[row]
        torch.testing.assert_close(chunked.runs[mine[mine >= 0]], together.runs[theirs[theirs >= 0]], atol=1e-5, rtol=0)

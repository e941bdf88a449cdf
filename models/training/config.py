"""The training recipe's knobs, with the defaults that produced the shipped weights."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from models.grounding import GROUNDED
from models.world.captions import training_captions_fingerprint
from models.world.vocabulary import WORLD, Vocabulary

LATER_STAGES = (
    "sharpen_",
    "grounder_",
    "decoder_",
    "rollout_",
    "first_frames_",
    "settle_",
    "pin_",
    "own_decoder_",
    "anchor_",
    "copy_",
    "camera_",
)
"""Field prefixes of the stages after the denoiser (and of the grounder and decoder, which do not touch it)."""

FINE_TUNE_RNG_TAGS = {"rollout": 13, "first_frames": 19, "settle": 23, "pin": 29, "anchor": 31, "copy": 37}
"""The denoiser's fine-tuning stages, each with the number that seeds its own random stream beside the config's."""


@dataclass(frozen=True)
class FineTuneStage:
    """What one fine-tuning stage of the denoiser takes from the config (`TrainConfig.fine_tune_stage`)."""

    name: str  # its fields' prefix, and its checkpoint's file name
    steps: int
    lr: float
    ema_decay: float
    checkpoint_every: int
    recipe: dict[str, Any]  # its checkpoint resumes only under this
    rng_seed: tuple[int, int]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the shipped weights; the same config and seed give the same weights."""

    seed: int = 0
    # 1. autoencoder, on random crops of world frames
    ae_steps: int = 8000
    ae_batch: int = 8
    ae_crop: int = 64
    ae_lr: float = 1e-3
    ae_edge_weight: float = 0.5
    # 1b. the decoder learns to draw edges: L1 + gradients + a patch critic, the encoder frozen
    decoder_steps: int = 1500
    decoder_batch: int = 8
    decoder_lr: float = 2e-4
    decoder_adversarial: float = 0.1
    decoder_adversarial_from: int = 100
    # 2. the clip bank the denoiser learns from, encoded once to latents
    clips: int = 1536
    clip_frames: int = 12
    captions_per_clip: int = 24
    # 3. denoiser
    unet_steps: int = 3600
    unet_batch: int = 32
    unet_lr: float = 4e-4
    warmup_steps: int = 100
    ema_decay: float = 0.995
    context_noise_max: float = 0.3
    context_noise_inference: float = 0.05
    context_drop: float = 0.1
    context_swap: float = 0.15
    # text augmentation, so that new phrasings land where the training phrasings of the same scene did
    text_drop: float = 0.2
    text_mix: bool = True
    text_noise: float = 0.015
    # 4. adversarial sharpening of one-step frames (a latent critic; see models/training/sharpen.py)
    sharpen_steps: int = 900
    sharpen_weight: float = 0.3
    sharpen_lr: float = 5e-5
    sharpen_critic_lr: float = 2e-4
    sharpen_r1: float = 0.1
    sharpen_anchor: float = 1.0
    sharpen_own_context: float = 0.5  # share of critic rows whose previous frame is the denoiser's own first frame
    # 5. rollout fine-tuning (models/training/rollout.py): a previous frame given clean is trusted, 1-4 sampling
    #    steps, and the model's own frames as previous frames, with the loss on the true next frame
    rollout_steps: int = 1000
    rollout_batch: int = 32
    rollout_lr: float = 1e-4
    rollout_context_noise: float = 0.02  # also what streams add to the previous frame
    rollout_clean_share: float = 0.5  # rows whose previous frame gets at most that noise
    rollout_own_share: float = 0.25  # rows whose previous frame is the model's own
    rollout_own_frames: int = 4  # own frames made in turn before it, 1 to this many
    # 6. first frames (models/training/first_frames.py): text alone draws the scene; streams keep it
    first_frames_steps: int = 3000
    first_frames_batch: int = 32
    first_frames_lr: float = 2e-4
    first_frames_canonical: float = 0.5  # first-frame rows captioned with the scene's canonical caption
    first_frames_stills: int = 8  # renders of each bank clip's scene at other layouts and moments
    first_frames_share: float = 0.4  # rows with no previous frame and a still as target
    first_frames_own_share: float = 0.15  # rows after the model's own first frames, a still as target
    # 6b. settling (models/training/first_frames.py): after its own first frames, a stream aims at the nearest
    # of the scene's stills, so it settles on one picture instead of the average of all it could be
    settle_steps: int = 1500
    settle_lr: float = 1e-4
    settle_first_share: float = 0.25
    settle_own_share: float = 0.4
    # 6c. one picture per scene (models/training/pinned.py): first frames aim at the subject's medoid layout,
    # frames after the model's own at the nearest of that layout's first moments
    pin_steps: int = 3600
    pin_lr: float = 3e-4
    pin_first_share: float = 0.35
    pin_own_share: float = 0.3
    pin_moments: int = 4
    # 6d. the decoder draws the denoiser's own latents as the nearest render of their scene
    # (models/training/own_decoder.py); off: after pinning (6c) the stage 1b decoder draws the latents
    # streams hold sharper and nearer the world (docs/fidelity.md)
    own_decoder_steps: int = 0
    own_decoder_lr: float = 1e-4
    own_decoder_clips: int = 512
    own_decoder_stills: int = 8
    # 6e. the anchor (models/training/anchor.py): four more input channels carry the frame a stream started
    # from, so that its continuation can come back to that picture instead of drifting to the pinned one
    anchor_steps: int = 1800
    anchor_batch: int = 32
    anchor_lr: float = 3e-4
    anchor_first_share: float = 0.35  # first frames: no previous frame, no anchor, a pinned still as target
    anchor_own_share: float = 0.3  # after the model's own frames from text alone, its first frame as anchor
    anchor_own_rest: float = 0.5  # of the other rows, those after the model's own frames from a true frame
    anchor_own_frames: int = 6  # own frames made in turn before such a row, 1 to this many
    # 6f. the copy head (models/training/copy_head.py): per latent cell the UNet mixes its drawing with the
    # anchor and the previous frame moved by a 3x3 kernel, so that a stream keeps its picture. Off in the
    # shipped recipe: 900 steps held a stream's start better (hold -0.7 dB instead of -2.1) but blurred what
    # streams keep (sharpness 0.66, layout 26.2 dB at 10 s); docs/fidelity.md
    copy_steps: int = 0
    copy_batch: int = 32
    copy_lr: float = 2e-4  # the UNet's body
    copy_head_lr: float = 1e-3  # its output layer, which carries the new channels
    copy_clips: int = 400  # long clips, for rollouts as long as a second
    copy_clip_frames: int = 26
    copy_own_frames: int = 24  # own frames made in turn before a row, 0 to this many
    copy_canonical: float = 0.5  # rows captioned with the scene's canonical caption (it names the camera)
    copy_keep_share: float = 0.25  # rows drawn as the anchor stage draws them, so that the drawing stays
    # 7. the prompt grounder: a text-only classifier naming the scene a prompt asks for (models/grounding.py)
    grounder_captions: int = 9000
    grounder_max_words: int = 5
    grounder_unnamed: float = 0.1  # share of captions whose subject (and, apart, palette) words are left out
    grounder_no_scene: float = 0.1  # share of captions that keep only the template's words ("give me ..., pan left")
    grounder_steps: int = 1000
    grounder_lr: float = 0.05
    grounder_weight_decay: float = 1e-4
    grounder_threshold: float = 0.5  # inference: canonical words are added from this probability on
    grounder_own_match_only: bool = True  # a value's logit weighs its own phrase match alone (models/grounding.py)
    grounder_lexicon_senses: int = 3  # WordNet senses per rare word in the grounder's dictionary table
    # 7b. the camera reader: which way a prompt's camera moves (models/camera.py), on the grounder's captions
    camera_steps: int = 600
    camera_batch: int = 512
    camera_lr: float = 3e-3
    camera_weight_decay: float = 1e-4
    camera_clips: int = 48  # world clips per camera x pace value its motion is fitted on
    camera_clip_frames: int = 25
    camera_max_travel: float = 0.25  # inference: how far (frame widths, scale growth) a camera moves before it rests
    # inference: how far each stream's starting noise moves per frame (1 = fresh noise, flickers)
    noise_drift_inference: float = 0.0  # frozen: with the rollout stage, drifting noise only made frames jitter
    # inference: noise on the previous frame after the rollout stage (it trusts a clean one; noise only jitters)
    stream_context_noise: float = 0.0
    # inference: denoising steps of a stream's first frame, which has no previous frame to follow
    new_prompt_steps_inference: int = 0  # 0: as many as the rest; 2 and 4 drew the same layouts at 4x the cost
    # bookkeeping
    checkpoint_every: int = 200

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, for the model card and checkpoints."""
        return asdict(self)

    def _stage_fields(self, prefix: str) -> dict[str, Any]:
        """The fields of one stage: those whose names start with `prefix`."""
        return {name: value for name, value in self.to_dict().items() if name.startswith(prefix)}

    def autoencoder_recipe(self) -> dict[str, Any]:
        """The fields the autoencoder stage depends on (its checkpoint resumes only under these)."""
        return {"seed": self.seed, **self._stage_fields("ae_")}

    def decoder_recipe(self) -> dict[str, Any]:
        """The autoencoder's recipe and the decoder stage's own fields."""
        decoder = self._stage_fields("decoder_")
        return {**self.autoencoder_recipe(), **decoder}

    def clip_bank_recipe(self) -> dict[str, Any]:
        """The fields the clip bank depends on: the autoencoder's, which clips, and the training captions."""
        return {
            **self.autoencoder_recipe(),
            "clips": self.clips,
            "clip_frames": self.clip_frames,
            "captions_per_clip": self.captions_per_clip,
            "training_captions": training_captions_fingerprint(),
        }

    def denoiser_recipe(self) -> dict[str, Any]:
        """Everything but bookkeeping and inference-time settings, which do not change the trained weights."""
        unused = {
            "checkpoint_every",
            "context_noise_inference",
            "noise_drift_inference",
            "new_prompt_steps_inference",
            "stream_context_noise",
        }
        recipe = {
            name: value
            for name, value in self.to_dict().items()
            if name not in unused
            and not name.startswith(LATER_STAGES)
        }
        return {**recipe, "training_captions": training_captions_fingerprint()}

    def sharpen_recipe(self) -> dict[str, Any]:
        """The denoiser's recipe and the sharpening stage's own fields, with the inference context noise
        (the stage noises the model's own first frames with it, as a stream does)."""
        sharpening = self._stage_fields("sharpen_")
        return {**self.denoiser_recipe(), **sharpening, "context_noise_inference": self.context_noise_inference}

    def rollout_recipe(self) -> dict[str, Any]:
        """What the sharpened denoiser depends on, and the rollout stage's own fields."""
        rollout = self._stage_fields("rollout_")
        return {**self.sharpen_recipe(), **rollout}

    def still_bank_recipe(self) -> dict[str, Any]:
        """The clip bank's recipe (the stills are of its clips' scenes) and how many stills per clip."""
        return {**self.clip_bank_recipe(), "first_frames_stills": self.first_frames_stills}

    def first_frames_recipe(self) -> dict[str, Any]:
        """What the rolled-out denoiser depends on, and the first-frames stage's own fields."""
        first = self._stage_fields("first_frames_")
        return {**self.rollout_recipe(), **first}

    def settle_recipe(self) -> dict[str, Any]:
        """What the first-frames denoiser depends on, and the settling stage's own fields."""
        settle = self._stage_fields("settle_")
        return {**self.first_frames_recipe(), **settle}

    def pinned_stills_recipe(self) -> dict[str, Any]:
        """The clip bank's recipe (the pinned stills are of its clips' scenes) and how many moments of each."""
        return {**self.clip_bank_recipe(), "pin_moments": self.pin_moments}

    def pin_recipe(self) -> dict[str, Any]:
        """What the settled denoiser depends on, and the pinning stage's own fields."""
        pin = self._stage_fields("pin_")
        return {**self.settle_recipe(), **pin}

    def own_decoder_recipe(self) -> dict[str, Any]:
        """What the finished denoiser and the decoder depend on, and this stage's own fields."""
        own = self._stage_fields("own_decoder_")
        return {**self.pin_recipe(), **self.decoder_recipe(), **own}

    def anchor_recipe(self) -> dict[str, Any]:
        """What the pinned denoiser depends on, and the anchor stage's own fields."""
        anchor = self._stage_fields("anchor_")
        return {**self.pin_recipe(), **anchor}

    def long_clips_recipe(self) -> dict[str, Any]:
        """The fields the copy stage's long clips depend on: the clip bank's (its autoencoder and captions), and
        how many and how long."""
        return {**self.clip_bank_recipe(), "copy_clips": self.copy_clips, "copy_clip_frames": self.copy_clip_frames}

    def copy_recipe(self) -> dict[str, Any]:
        """What the anchored denoiser depends on, and the copy stage's own fields but its length: the stage runs
        at a constant rate, so a longer run passes through a shorter one's checkpoint and goes on from it."""
        own = {name: value for name, value in self._stage_fields("copy_").items() if name != "copy_steps"}
        return {**self.anchor_recipe(), **own}

    def fine_tune_stage(self, name: str) -> FineTuneStage:
        """The settings of the denoiser's fine-tuning stage `name` (a key of `FINE_TUNE_RNG_TAGS`)."""
        return FineTuneStage(
            name=name,
            steps=getattr(self, f"{name}_steps"),
            lr=getattr(self, f"{name}_lr"),
            ema_decay=self.ema_decay,
            checkpoint_every=self.checkpoint_every,
            recipe=getattr(self, f"{name}_recipe")(),
            rng_seed=(self.seed, FINE_TUNE_RNG_TAGS[name]),
        )

    def grounder_recipe(self, vocabulary: Vocabulary = WORLD) -> dict[str, Any]:
        """What the grounder's embedded captions depend on: the seed, how many, which words (text only)."""
        return {
            "seed": self.seed,
            "grounder_captions": self.grounder_captions,
            "grounder_max_words": self.grounder_max_words,
            "grounder_unnamed": self.grounder_unnamed,
            "grounder_no_scene": self.grounder_no_scene,
            "grounded": list(GROUNDED),
            # what a checkpoint's features hold, and how they were embedded (each distinct text once)
            "grounder_inputs": "sentence, phrase matches bar its own, word runs; embedded once",
            "training_captions": training_captions_fingerprint(vocabulary),
            "descriptions": vocabulary.descriptions,
        }

    def camera_recipe(self) -> dict[str, Any]:
        """What the camera reader's encoded captions depend on: the grounder's captions and its training (the
        captions are grounded before they are encoded)."""
        return {**self.grounder_recipe(), **self._stage_fields("grounder_"), "camera_inputs": "grounded token states"}

    def quick(self) -> TrainConfig:
        """A tiny version of the recipe for tests and smoke runs (minutes become seconds)."""
        return TrainConfig(
            seed=self.seed,
            ae_steps=20,
            decoder_steps=6,
            decoder_adversarial_from=3,
            ae_batch=8,
            clips=24,
            clip_frames=4,
            captions_per_clip=2,
            unet_steps=10,
            sharpen_steps=6,
            rollout_steps=6,
            first_frames_steps=6,
            first_frames_batch=8,
            first_frames_stills=2,
            settle_steps=4,
            pin_steps=4,
            pin_moments=2,
            own_decoder_steps=4,
            own_decoder_clips=4,
            own_decoder_stills=2,
            anchor_steps=4,
            anchor_batch=8,
            anchor_own_frames=2,
            copy_steps=4,
            copy_batch=8,
            copy_clips=6,
            copy_clip_frames=5,
            copy_own_frames=3,
            rollout_batch=8,
            grounder_captions=48,
            grounder_steps=20,
            camera_steps=10,
            camera_batch=16,
            camera_clips=2,
            camera_clip_frames=3,
            unet_batch=8,
            warmup_steps=2,
            checkpoint_every=5,
        )

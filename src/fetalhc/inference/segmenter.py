"""Inference backends (PyTorch, ONNX Runtime) behind one `Segmenter`: grey images in,
probability maps at each image's original size out."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from fetalhc.errors import FetalHCError
from fetalhc.inference.backends import (
    has_onnxruntime,
    onnx_config,
    onnx_runner,
    torch_runner,
)
from fetalhc.measure.maps import WindowedMap, as_windowed
from fetalhc.measure.postprocess import clean_mask
from fetalhc.model.crops import (
    OUTSIDE_LOGIT,
    around_box,
    box_of,
    crop_matrix,
    crop_window,
    cut,
    uncrop_logits,
    whole_image,
)
from fetalhc.model.preprocess import preprocess

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx")

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "model" / "bundled" / "default.safetensors"


class Segmenter:
    """Runs a trained model on batches of grey images.

    The image is resized to the model size (area interpolation), the logits are resized
    back to the original size (bilinear) before the sigmoid, so the thresholded mask has
    a smooth boundary at full resolution. `flip_tta` averages with the mirrored image.
    """

    def __init__(
        self,
        checkpoint: str | Path,
        backend: str = "auto",
        threads: int = 0,
        batch_size: int = 8,
        flip_tta: bool = False,
        locate_side: int | None = None,
        crop_side: int | None = None,
        close_up: bool = True,
        relocate_below: float | None = None,
        runner: Callable[[np.ndarray], np.ndarray] | None = None,
        config: dict | None = None,
        head_crop: float | None = None,
    ) -> None:
        """`threads`: ONNX Runtime's intra-op threads for this model (0: its default).
        PyTorch's threads belong to the process: set them with `model.unet.set_threads`.
        `locate_side`: two-pass models, the first pass's square side instead of the
        model's own (`locate_side` in its config, else its image size); a multiple of 32.
        `crop_side`: two-pass models, the close-up's side instead of the model's own
        (`crop_side` in its config, else its image size; the head is then seen at another
        scale than in training).
        `close_up=False`: two-pass models, the first pass alone (its whole-image map is the
        result; half the network's cost).
        `relocate_below`: a first pass smaller than the model's side that finds a head
        spanning less than this share of the image's longer side locates it again at the
        model's side (default `RELOCATE_BELOW`; 0: only heads it did not find).
        `head_crop`: two-pass models, another margin around the located head than the
        config's (the margin the model was trained with).
        `runner` and `config`: a network held in memory (or a test double) instead of
        loading `checkpoint` (then only a name): a function from a preprocessed batch
        (N, 1, H, W float32) to logits, and the config.json mapping it was trained with."""
        from fetalhc.model.checkpoint import config_for_checkpoint

        if backend not in BACKENDS:
            raise FetalHCError(f"backend must be one of {', '.join(BACKENDS)}")
        self.checkpoint = Path(checkpoint)
        if runner is not None:
            self.config = config
        elif self.checkpoint.suffix == ".onnx":
            if backend == "torch":
                raise FetalHCError("backend torch needs a .safetensors checkpoint, not ONNX")
            if not self.checkpoint.is_file():
                raise FetalHCError(f"{self.checkpoint}: checkpoint not found")
            backend, self.config = "onnx", onnx_config(self.checkpoint)
        elif not self.checkpoint.is_file():
            raise FetalHCError(f"{self.checkpoint}: checkpoint not found")
        else:
            self.config = config_for_checkpoint(self.checkpoint)
        from fetalhc.model.config import ModelConfig, check_locate_side

        if not isinstance(self.config, dict):
            raise FetalHCError(f"{self.checkpoint}: its config is not a mapping")
        model_config = ModelConfig.from_dict(self.config.get("model", {}))  # checks the types
        w, h = model_config.image_size
        self.size = (int(w), int(h))
        self.normalization = model_config.normalization
        self.head_crop = model_config.head_crop if head_crop is None else float(head_crop)
        graph = runner is None and self.checkpoint.suffix == ".onnx"
        # The sides a config asks for, 0 meaning the model's own; an exported graph has one
        # input size, so both its passes run at it.
        own = (0, 0) if graph else (model_config.locate_side, model_config.crop_side)
        side = own[0] if locate_side is None else check_locate_side(locate_side)
        crop = own[1] if crop_side is None else check_locate_side(crop_side, "crop_side")
        self.locate_side = side or self.size[0]
        self.crop_side = crop or self.size[0]
        other = {self.locate_side, self.crop_side} - {self.size[0]}
        if graph and other:  # said at load, not on every image
            raise FetalHCError(
                f"{self.checkpoint}: exported for {self.size[0]}x{self.size[1]}, not "
                f"{min(other)}x{min(other)}; use the .safetensors checkpoint for another "
                "pass side"
            )
        self.close_up = close_up
        below = RELOCATE_BELOW if relocate_below is None else relocate_below
        if isinstance(below, bool) or not isinstance(below, int | float) or not 0 <= below <= 1:
            raise FetalHCError(f"relocate_below must be a share from 0 to 1, got {below!r}")
        self.relocate_below = float(below)
        self.located_again = 0  # images whose first pass ran again (a cost to report)
        self.batch_size = max(1, batch_size)
        self.flip_tta = flip_tta
        self.threads = threads
        if runner is not None:
            self._run, self.backend = runner, "runner"
            return
        if backend == "auto":
            backend = "onnx" if has_onnxruntime() else "torch"
            if backend == "onnx" and self.checkpoint.suffix != ".onnx":
                try:
                    self._run = onnx_runner(self.checkpoint, self.size, threads)
                    self.backend = "onnx"
                    return
                except (FetalHCError, OSError) as exc:  # no ONNX here: PyTorch still works
                    log.info("fetalhc: ONNX Runtime unavailable (%s); using PyTorch", exc)
                    backend = "torch"
        self.backend = backend
        if backend == "onnx":
            self._run = onnx_runner(self.checkpoint, self.size, threads)
        else:
            self._run = torch_runner(self.checkpoint, self.config)

    # ------------------------------------------------------------ API
    @property
    def checkpoints(self) -> list[Path]:
        """The files this segmenter's predictions depend on (an average has several)."""
        return [self.checkpoint]

    def _network(self, x: np.ndarray) -> np.ndarray:
        """(N, H, W) logits of a preprocessed batch, in chunks, with flip TTA if asked."""
        out = []
        for start in range(0, len(x), self.batch_size):
            chunk = x[start : start + self.batch_size]
            logits = self._run(chunk)[:, 0]
            if self.flip_tta:
                flipped = self._run(np.ascontiguousarray(chunk[..., ::-1]))[:, 0, :, ::-1]
                logits = (logits + flipped) / 2
            out.append(logits)
        return np.concatenate(out, axis=0)

    def logits_model_size(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(N, H, W) logits at the model's input size: of the whole image resized, or (a
        two-pass model) of the whole image letterboxed into the model's square."""
        if self.head_crop:
            return self._crop_logits(images, [whole_image(im.shape) for im in images])[0]
        w, h = self.size
        small = np.stack([cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA) for im in images])
        return self._network(preprocess(small, self.normalization))

    def _crop_logits(self, images, squares, side: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
        side = side or self.crop_side
        matrices = [crop_matrix(sq, side) for sq in squares]
        crops = np.stack([cut(im, m, side) for im, m in zip(images, matrices, strict=True)])
        return self._network(preprocess(crops, self.normalization)), matrices

    def _locate(self, images, shapes, side: int) -> list[tuple]:
        """The locating pass at `side`: per image its probability map
        (`coarse_map`), its logits at the model's size for later, and the head's box."""
        logits, matrices = self._crop_logits(images, [whole_image(s) for s in shapes], side)
        located = []
        for lg, m, shape in zip(logits, matrices, shapes, strict=True):
            found = coarse_map(lg, m, shape)
            located.append((found, _later_small(lg, m, shape, self.size), _box_in_image(found)))
        return located

    def predict(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        """Probability maps at each image's own size (and what the measurement and the
        quality flag need besides)."""
        if not self.head_crop:
            logits = self.logits_model_size(images)
            return [
                Prediction(upsample_probability(lg, im.shape[:2]), lg)
                for lg, im in zip(logits, images, strict=True)
            ]
        # Pass 1: find the head in the whole image. Its map is made at the image's size
        # only around what the pass saw (probability >= COARSE_FLOOR; a cell beyond).
        shapes = [im.shape[:2] for im in images]
        located = self._locate(images, shapes, self.locate_side)
        if self.locate_side != self.size[0]:
            # A first pass at another side than the model's is run again at the model's
            # side where it found no head or a small one: small heads can vanish at a
            # smaller side, and a second head beside a small one (twins) fades there.
            again = [
                i
                for i, (_, _, box) in enumerate(located)
                if needs_relocating(box, shapes[i], self.relocate_below)
            ]
            self.located_again += len(again)
            if again:
                redone = self._locate(
                    [images[i] for i in again], [shapes[i] for i in again], self.size[0]
                )
                for i, one in zip(again, redone, strict=True):
                    located[i] = one
        coarse = [c for c, _, _ in located]
        small = [lg for _, lg, _ in located]
        others = self._other_views(images, shapes, [box for _, _, box in located])
        if not self.close_up:  # one pass: the whole-image map is the result
            return [
                Prediction(c, lg, other_view=o)
                for c, lg, o in zip(coarse, small, others, strict=True)
            ]
        final: list[WindowedMap] = list(coarse)
        boxes = [box for _, _, box in located]
        # Pass 2: outline it in a square around what pass 1 found; its map is made only
        # where the square lands (the rest is OUTSIDE_LOGIT, known).
        found = [i for i, box in enumerate(boxes) if box is not None]
        if found:
            squares = [around_box(boxes[i], self.head_crop) for i in found]
            fine_logits, fine_matrices = self._crop_logits([images[i] for i in found], squares)
            for i, lg, m in zip(found, fine_logits, fine_matrices, strict=True):
                side = lg.shape[-1]
                window = crop_window(m, shapes[i], (0, 0, side, side))
                fine = uncrop_logits(lg, m, shapes[i], window)
                final[i] = probability_map(fine, window, shapes[i])
                small[i] = _later_small(lg, m, shapes[i], self.size)
        return [
            Prediction(p, lg, c, o)
            for p, lg, c, o in zip(final, small, coarse, others, strict=True)
        ]

    def _other_views(self, images, shapes, boxes) -> list[WindowedMap | None]:
        """For an image of two views side by side (`other_view`) whose located head lies in
        one: the locating pass on the other view alone, where a second head the whole-image
        pass missed is found (a network trained on one head per image often sees one)."""
        halves = {i: other_view(boxes[i], shapes[i]) for i in range(len(images))}
        wanted = [i for i, half in halves.items() if half is not None]
        out: list[WindowedMap | None] = [None] * len(images)
        if wanted:
            crops = [np.ascontiguousarray(images[i][:, slice(*halves[i])]) for i in wanted]
            views = self._locate(crops, [c.shape[:2] for c in crops], self.locate_side)
            for i, (view, _, _) in zip(wanted, views, strict=True):
                out[i] = view
        return out

    def probabilities(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Probability maps at each image's own size."""
        return [p.probability for p in self.predict(images)]


# An image at least this many times as wide as it is tall holds two views side by side
# (a dual-view screen, or two frames put together): HC18's are 1.48, common frames <= 1.78.
TWO_VIEWS_ASPECT = 2.0


def other_view(box, shape_hw) -> tuple[int, int] | None:
    """The columns (start, stop) of the view that does not hold the located head, in an
    image of two views side by side; None for one view, no head, or a head across both."""
    h, w = shape_hw
    if box is None or w < TWO_VIEWS_ASPECT * h:
        return None
    if box[2] <= w / 2:
        return (w // 2, w)
    if box[0] >= w / 2:
        return (0, w // 2)
    return None


# A head found by a smaller first pass that spans less than this share of the image's
# longer side is located again at the model's side. HC18's 799 labelled heads span
# 0.21-0.81 of it (4 % under 0.3); two heads side by side in one frame span ~0.25 each, and
# with a 192 first pass the half-width model's second faded to 3 % of the first's area
# (0.97 at 256). Out of fold the re-run mended small heads lost at 192 (results/model-v3).
RELOCATE_BELOW = 0.3


def needs_relocating(box, shape_hw, below: float) -> bool:
    """Whether a smaller first pass's find is located again at the model's side: no head
    (`box` None), or one spanning less than `below` of the image's longer side."""
    if box is None:
        return True
    span = max(box[2] - box[0], box[3] - box[1])
    return span < below * max(shape_hw[:2])


# The first pass's map at the image's size is made where its probability reaches this (and
# a crop cell beyond): thresholds from here up give the same masks as a map made
# everywhere; below it the map reads as OUTSIDE_LOGIT's probability.
COARSE_FLOOR = 0.01
_COARSE_FLOOR_LOGIT = float(np.log(COARSE_FLOOR / (1 - COARSE_FLOOR)))


def probability_map(logits: np.ndarray, window, shape_hw) -> WindowedMap:
    return WindowedMap(sigmoid(logits), window, tuple(shape_hw[:2]), _OUTSIDE_PROBABILITY)


def coarse_map(logits: np.ndarray, matrix: np.ndarray, shape_hw) -> WindowedMap:
    """The first pass's probability at the image's size, around what it saw."""
    x, y, w, h = cv2.boundingRect((logits >= _COARSE_FLOOR_LOGIT).astype(np.uint8))
    if w == 0:
        window = (slice(0, 0), slice(0, 0))
    else:  # bilinear: an image pixel's value comes from the crop cells around it
        window = crop_window(matrix, shape_hw, (x - 1, y - 1, w + 2, h + 2))
    return probability_map(uncrop_logits(logits, matrix, shape_hw, window), window, shape_hw)


def _box_in_image(coarse: WindowedMap) -> tuple[float, float, float, float] | None:
    box = box_of(clean_mask(coarse.values >= 0.5))
    if box is None:
        return None
    y0, x0 = coarse.offset
    return box[0] + x0, box[1] + y0, box[2] + x0, box[3] + y0


def _later_small(logits: np.ndarray, matrix: np.ndarray, shape_hw, size):
    """The paper's metrics compare at the model's size: the logits mapped back to the image,
    resized to it; made only when asked for (evaluation)."""

    def small() -> np.ndarray:
        full = uncrop_logits(logits, matrix, shape_hw)
        return cv2.resize(full, size, interpolation=cv2.INTER_AREA)

    return small


class Prediction:
    """One image's prediction: the head probability at the image's size (`probability`;
    `probability_map` holds it as computed, in a window), the logits at the model's size
    of the whole image resized (`logits_small`, for the paper's metrics; made when first
    asked for), and, for a two-pass model, the first (locating) pass's probability
    (`coarse_probability`, `coarse_map`) and, in an image of two views side by side, the
    locating pass's probability on the view without the head (`other_view`, in that
    view's own pixels: a second head there)."""

    def __init__(
        self,
        probability: np.ndarray | WindowedMap,
        logits_small,  # an array, or a function that makes it
        coarse_probability: np.ndarray | WindowedMap | None = None,
        other_view: np.ndarray | WindowedMap | None = None,
    ) -> None:
        self.probability_map = as_windowed(probability)
        self.other_view = None if other_view is None else as_windowed(other_view)
        self.coarse_map = None if coarse_probability is None else as_windowed(coarse_probability)
        self._small = logits_small

    @property
    def probability(self) -> np.ndarray:
        return self.probability_map.full()

    @property
    def coarse_probability(self) -> np.ndarray | None:
        return None if self.coarse_map is None else self.coarse_map.full()

    @property
    def logits_small(self) -> np.ndarray:
        if callable(self._small):
            self._small = self._small()
        return self._small


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50)))


_OUTSIDE_PROBABILITY = float(sigmoid(np.float32(OUTSIDE_LOGIT)))


def upsample_probability(logits: np.ndarray, shape_hw: tuple[int, int]) -> np.ndarray:
    h, w = shape_hw
    return sigmoid(cv2.resize(logits.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR))


def default_checkpoint() -> Path:
    if not DEFAULT_MODEL.is_file():
        raise FetalHCError("no bundled model in this installation; pass --checkpoint or --run")
    return DEFAULT_MODEL

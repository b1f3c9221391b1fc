"""Linear probes per layer: where does temporal information become linearly decodable?

:class:`TemporalProbe` reads the residual stream of chosen positions (by default every
video token) at every layer, over many prompts, and fits one linear classifier (or ridge
regression, for continuous targets) per layer. Scores are measured on **held-out
videos**: the split is by video, never by token or by question, since tokens of one video
share its content and a split that puts one video (asked two questions) on both sides lets
a probe memorise videos. A sample's video is known by the hash of its frames (or give
``video=`` ids).

Targets:

- ``target="frame_index"``: each video token's frame ``t`` (the model's temporal unit).
- per-sample labels (e.g. the motion direction of the video), broadcast to every chosen
  position of that sample;
- ``fn(layout, position) -> label`` per position (``fn(layout, t)`` with
  ``pool="frame_mean"``), or a list with one label per chosen position (per frame).

Example:
    >>> probe = TemporalProbe(model, target="frame_index", pool="frame_mean")  # doctest: +SKIP
    >>> probe.collect((p, None) for p in prompts)  # doctest: +SKIP
    >>> probe.fit(test_size=0.25, seed=0)  # doctest: +SKIP
    >>> probe.plot()  # doctest: +SKIP

Axis glossary: ``example`` (one row of a layer's design matrix: a token, or a frame with
``pool="frame_mean"``), ``d_model``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from tqdm.auto import tqdm

from videolens.analyses.lens import PositionsLike, Site, check_site, read_resid, resolve_layers, resolve_positions
from videolens.core.layout import TokenLayout
from videolens.core.prompt import VideoPrompt
from videolens.errors import VideoLensError

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from videolens.core.hooked import HookedVideoLLM

Pool = Literal["token", "frame_mean"]
Task = Literal["auto", "classification", "regression"]
RESULT_COLUMNS = ["layer", "site", "metric", "train_score", "test_score", "n_train", "n_test", "chance"]


class TemporalProbe:
    """Per-layer linear probes on residual streams, scored on held-out videos.

    Args:
        model: the :class:`~videolens.HookedVideoLLM` to read.
        positions: the positions probed: a group name (``"video"``, ``"frame(0)"``), or
            ``fn(layout) -> positions``.
        site: ``"output"`` (``hook_resid_post``) or ``"input"`` (``hook_resid_pre``).
        layers: the layers probed (None: all).
        pool: ``"token"`` (one example per position) or ``"frame_mean"`` (the mean of the
            chosen positions of each frame: one example per frame).
        target: ``"frame_index"`` for the built-in label (frame ``t``), or None to give
            labels with each sample.
        task: ``"classification"`` (multinomial logistic regression), ``"regression"``
            (ridge) or ``"auto"`` (regression for float labels, else classification).
        C: inverse regularisation strength of the logistic regression.
        alpha: ridge penalty.
        max_iter: iterations of the logistic regression's solver.

    Features are standardised (fit on the training split only) before each probe.
    Pitfall: activations of all chosen positions and layers are kept on the CPU; for
    long videos and big models pick layers or ``pool="frame_mean"``.
    """

    def __init__(
        self,
        model: HookedVideoLLM,
        positions: PositionsLike = "video",
        site: Site = "output",
        layers: int | Iterable[int] | None = None,
        pool: Pool = "token",
        target: Literal["frame_index"] | None = None,
        task: Task = "auto",
        *,
        C: float = 1.0,
        alpha: float = 1.0,
        max_iter: int = 2000,
    ) -> None:
        if pool not in ("token", "frame_mean"):
            raise VideoLensError(f"pool={pool!r} is unknown; use 'token' or 'frame_mean'.")
        if target not in (None, "frame_index"):
            raise VideoLensError(f"target={target!r} is unknown; use 'frame_index' or give labels with each sample.")
        if task not in ("auto", "classification", "regression"):
            raise VideoLensError(f"task={task!r} is unknown; use 'auto', 'classification' or 'regression'.")
        self.model = model
        self.positions = positions
        self.site = check_site(site)
        self.layers = resolve_layers(model, layers)
        self.pool: Pool = pool
        self.target = target
        self.task: Task = task
        self.C, self.alpha, self.max_iter = C, alpha, max_iter
        self._acts: list[Float[torch.Tensor, "layer example d_model"]] = []
        self._labels: list[np.ndarray] = []
        self._videos: list[str] = []
        self.results_: pd.DataFrame | None = None
        self.probes_: dict[int, Any] = {}
        self.split_: dict[str, np.ndarray] = {}

    def __repr__(self) -> str:
        return (
            f"TemporalProbe(site={self.site!r}, layers={len(self.layers)}, pool={self.pool!r}, "
            f"target={self.target!r}, samples={self.n_samples})"
        )

    @property
    def n_samples(self) -> int:
        """How many samples (videos) have been collected."""
        return len(self._acts)

    # ---- collecting ----------------------------------------------------------------------------
    def _examples(self, layout: TokenLayout) -> tuple[torch.Tensor, list[list[int]], list[int]]:
        """Positions to read, the rows they pool into, and each row's key (position or frame t)."""
        pos = resolve_positions(layout, self.positions)
        frame_of = layout.frame_of()
        if self.pool == "token":
            if self.target == "frame_index":
                pos = pos[torch.as_tensor(frame_of[pos.numpy()] >= 0)]
            return pos, [[i] for i in range(len(pos))], pos.tolist()
        frames = frame_of[pos.numpy()]
        keys = sorted({int(t) for t in frames if t >= 0})
        if not keys:
            raise VideoLensError(f"positions={self.positions!r} holds no frame token; pool='frame_mean' needs some.")
        return pos, [np.nonzero(frames == t)[0].tolist() for t in keys], keys

    def _labels_for(self, layout: TokenLayout, labels: Any, keys: list[int]) -> np.ndarray:
        """One label per example row (see the module docstring for what ``labels`` may be)."""
        if self.target == "frame_index":
            if labels is not None:
                raise VideoLensError(
                    "target='frame_index' labels each example with its frame; this sample also gave labels. "
                    "Pass bare prompts (or (prompt, None)), or TemporalProbe(..., target=None) to use yours."
                )
            frame_of = layout.frame_of()
            return np.asarray([k if self.pool == "frame_mean" else int(frame_of[k]) for k in keys])
        if labels is None:
            raise VideoLensError("This sample has no labels; pass (prompt, labels) pairs or target='frame_index'.")
        if callable(labels):
            return np.asarray([labels(layout, k) for k in keys])
        if isinstance(labels, (str, bytes, int, float, bool, np.generic)) or (
            isinstance(labels, np.ndarray) and labels.ndim == 0
        ):
            return np.asarray([labels.item() if isinstance(labels, np.ndarray) else labels] * len(keys))
        if isinstance(labels, Mapping):
            raise VideoLensError(
                f"Labels are a {type(labels).__name__}; give one label per sample, one per example, or a callable."
            )
        values = np.asarray(labels)
        if values.shape[:1] != (len(keys),):
            got = len(values) if values.ndim else 1
            raise VideoLensError(
                f"Got {got} labels for {len(keys)} examples of this sample; give one label per "
                f"{'frame' if self.pool == 'frame_mean' else 'chosen position'}, one per sample, or a callable."
            )
        return values

    @property
    def videos(self) -> list[str]:
        """Each collected sample's video id (given, or the hash of its frames): the split's unit."""
        return list(self._videos)

    @torch.no_grad()
    def add(
        self,
        prompt: VideoPrompt,
        labels: Any = None,
        fwd_hooks: Sequence[tuple[Any, Callable]] = (),
        video: str | None = None,
    ) -> None:
        """Read one sample's activations and labels (see :meth:`collect`).

        ``video``: the id of the sample's video (default: a hash of its frames), so that
        samples of one video are never split between train and test.
        """
        pos, rows, keys = self._examples(prompt.layout)
        y = self._labels_for(prompt.layout, labels, keys)
        resid = read_resid(self.model, prompt, self.layers, self.site, pos, fwd_hooks=fwd_hooks)
        if self.pool == "frame_mean":
            resid = torch.stack([resid[:, r].float().mean(1) for r in rows], dim=1)
        self._acts.append(resid)
        self._labels.append(y)
        self._videos.append(str(video) if video is not None else video_key(prompt))

    def collect(
        self,
        samples: Iterable[tuple[VideoPrompt, Any] | VideoPrompt],
        fwd_hooks: Sequence[tuple[Any, Callable]] = (),
        progress: bool = True,
    ) -> TemporalProbe:
        """Read activations of many samples (appended to those already collected).

        Args:
            samples: ``(prompt, labels)`` pairs, or ``(prompt, labels, video_id)``; with
                ``target="frame_index"`` bare prompts (or ``(prompt, None)``) will do.
                ``labels``: one per sample (broadcast), ``fn(layout, position)``
                (``fn(layout, t)`` with ``pool="frame_mean"``), or one per example.
                ``video_id`` (default: a hash of the frames) keeps a video's samples on one
                side of the split.
            fwd_hooks: hooks active while reading (e.g. an edit to test a probe).
            progress: show a progress bar.

        Returns:
            The probe, for chaining. Samples are numbered 0, 1, ... in the order collected;
            :meth:`fit` splits by these numbers.
        """
        total = len(samples) if hasattr(samples, "__len__") else None  # type: ignore[arg-type]
        for sample in tqdm(samples, total=total, desc="probe activations", disable=not progress):
            if isinstance(sample, VideoPrompt):
                sample = (sample, None)
            if not isinstance(sample, tuple) or len(sample) not in (2, 3):
                raise VideoLensError(
                    f"A probe sample is a prompt, (prompt, labels) or (prompt, labels, video_id); got {type(sample).__name__}."
                )
            self.add(sample[0], sample[1], fwd_hooks, video=sample[2] if len(sample) == 3 else None)
        return self

    # ---- fitting -------------------------------------------------------------------------------
    def dataset(self, layer: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(X, y, sample)`` of one layer: features ``(example, d_model)``, labels, sample numbers."""
        if not self._acts:
            raise VideoLensError("No activations yet; call collect(samples) first.")
        if layer not in self.layers:
            raise VideoLensError(f"Layer {layer} was not probed; this probe reads layers {self.layers}.")
        i = self.layers.index(layer)
        X = torch.cat([a[i] for a in self._acts]).float().numpy()
        y = np.concatenate(self._labels)
        groups = np.concatenate([np.full(len(lab), s) for s, lab in enumerate(self._labels)])
        return X, y, groups

    def _is_regression(self, y: np.ndarray) -> bool:
        if self.task != "auto":
            return self.task == "regression"
        return np.issubdtype(y.dtype, np.floating)

    def _checked_labels(self, y: np.ndarray, regression: bool) -> np.ndarray:
        """Labels the chosen task can use (floats for regression), or an error naming the fix."""
        if regression:
            try:
                y = y.astype(float)
            except (TypeError, ValueError):
                raise VideoLensError(
                    f"Regression needs numeric labels; got {y.dtype} labels (e.g. {y[0]!r}). "
                    "Use task='classification' for categories."
                ) from None
            if not np.isfinite(y).all():
                raise VideoLensError("Some labels are NaN or inf; give every example a finite label.")
            return y
        if np.issubdtype(y.dtype, np.floating):
            if not np.isfinite(y).all():
                raise VideoLensError("Some labels are NaN or inf; give every example a label.")
            if not np.equal(np.mod(y, 1), 0).all():
                raise VideoLensError(
                    "task='classification' needs class labels; these are continuous numbers. "
                    "Use task='regression' (or task='auto' with float labels)."
                )
        return y

    def split(
        self,
        train_groups: Sequence[int] | None = None,
        test_groups: Sequence[int] | None = None,
        test_size: float = 0.25,
        seed: int = 0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sample numbers for training and testing: as given, or a seeded random split of videos.

        The random split holds out ``test_size`` of the distinct videos with every sample of
        each; a given split may not put one video on both sides.

        Raises:
            VideoLensError: if a sample or a video is in both, a number was never collected,
                ``test_size`` is not a fraction, or either side would be empty.
        """
        n = self.n_samples
        if n == 0:
            raise VideoLensError("Nothing collected yet; call probe.collect(samples) before fitting or splitting.")
        everyone = np.arange(n)
        videos = np.asarray(self._videos)
        if train_groups is None and test_groups is None:
            if not 0 < test_size < 1:
                raise VideoLensError(f"test_size={test_size!r} must be a fraction between 0 and 1 (e.g. 0.25).")
            distinct = np.unique(videos)
            if len(distinct) < 2:
                raise VideoLensError(
                    f"A held-out split needs samples of at least 2 different videos; {n} collected of "
                    f"{len(distinct)} video(s)."
                )
            n_test = min(max(1, round(test_size * len(distinct))), len(distinct) - 1)
            held_out = np.random.default_rng(seed).permutation(distinct)[:n_test]
            test = everyone[np.isin(videos, held_out)]
        else:
            test = np.setdiff1d(everyone, train_groups) if test_groups is None else np.unique(test_groups)
        train = np.setdiff1d(everyone, test) if train_groups is None else np.unique(train_groups)
        unknown = np.setdiff1d(np.concatenate([train, test]), everyone)
        if unknown.size:
            raise VideoLensError(f"Samples {unknown.tolist()} were never collected; samples are 0..{n - 1}.")
        both = np.intersect1d(train, test)
        if both.size:
            raise VideoLensError(f"Samples {both.tolist()} are in both train and test; a held-out split needs none.")
        if not train.size or not test.size:
            raise VideoLensError("Train and test must each hold at least one sample.")
        shared = np.intersect1d(videos[train], videos[test])
        if shared.size:
            pairs = [
                (int(np.nonzero(videos[train] == v)[0][0]), int(np.nonzero(videos[test] == v)[0][0])) for v in shared
            ]
            named = ", ".join(f"samples {train[a]} and {test[b]}" for a, b in pairs[:3])
            raise VideoLensError(
                f"{shared.size} video(s) are in both train and test ({named} show one video); a held-out "
                "split keeps each video on one side: move them, or leave the split to fit()."
            )
        return train.astype(int), test.astype(int)

    def fit(
        self,
        train_groups: Sequence[int] | None = None,
        test_groups: Sequence[int] | None = None,
        *,
        test_size: float = 0.25,
        seed: int = 0,
        shuffle_labels: bool = False,
    ) -> pd.DataFrame:
        """Fit one probe per layer on the training samples and score it on the held-out ones.

        Args:
            train_groups, test_groups: sample numbers (collection order); give one or both,
                or neither for a random split holding out ``test_size`` of the videos (``seed``).
            shuffle_labels: permute the labels first (seeded): a control that should
                score at chance.

        Returns:
            One row per layer: ``layer, site, metric, train_score, test_score, n_train,
            n_test, chance``. ``metric`` is ``"accuracy"`` (classification) or ``"r2"``
            (ridge); ``n_*`` count examples; ``chance`` is the majority-class rate of the
            test examples (for regression, the R^2 of predicting the training mean).
        """
        from sklearn.linear_model import LogisticRegression, Ridge
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        train, test = self.split(train_groups, test_groups, test_size, seed)
        self.split_ = {"train": train, "test": test}
        rows, self.probes_ = [], {}
        for layer in self.layers:
            X, y, groups = self.dataset(layer)
            if shuffle_labels:
                y = np.random.default_rng(seed).permutation(y)
            tr, te = np.isin(groups, train), np.isin(groups, test)
            if not np.isfinite(X).all():
                bad = sorted({int(g) for g in groups[~np.isfinite(X).all(1)]})
                raise VideoLensError(
                    f"Layer {layer}'s activations hold NaN or inf (samples {bad[:5]}); the model or a hook "
                    "produced them. Check the fwd_hooks given to collect() and the model's dtype."
                )
            regression = self._is_regression(y)
            y = self._checked_labels(y, regression)
            if regression:
                head = Ridge(alpha=self.alpha)
            else:
                if len(np.unique(y[tr])) < 2:
                    raise VideoLensError("The training samples hold a single class; collect more varied samples.")
                head = LogisticRegression(C=self.C, max_iter=self.max_iter)
            probe = make_pipeline(StandardScaler(), head).fit(X[tr], y[tr])
            self.probes_[layer] = probe
            rows.append(
                {
                    "layer": layer,
                    "site": self.site,
                    "metric": "r2" if regression else "accuracy",
                    "train_score": float(probe.score(X[tr], y[tr])),
                    "test_score": float(probe.score(X[te], y[te])),
                    "n_train": int(tr.sum()),
                    "n_test": int(te.sum()),
                    "chance": _chance(y[tr], y[te], regression),
                }
            )
        self.results_ = pd.DataFrame(rows, columns=RESULT_COLUMNS)
        return self.results_

    def plot(self, title: str | None = None) -> go.Figure:
        """Held-out score per layer with the chance line (see :func:`videolens.viz.lens.plot_probe_scores`)."""
        from videolens.viz.lens import plot_probe_scores

        if self.results_ is None:
            raise VideoLensError("Nothing to plot yet; call fit() first.")
        return plot_probe_scores(self.results_, title=title)


def video_key(prompt: VideoPrompt) -> str:
    """A video's id from its content: the hash of its frames (or of the pixel inputs without frames)."""
    digest = hashlib.sha1()
    if prompt.frames is not None:
        frames = np.ascontiguousarray(prompt.frames)
        digest.update(str(frames.shape).encode())
        digest.update(frames.tobytes())
    else:
        pixels = sorted(k for k, v in prompt.inputs.items() if "pixel" in k and isinstance(v, torch.Tensor))
        if not pixels:
            raise VideoLensError("This prompt holds no frames to identify its video; pass video=<id> with it.")
        for k in pixels:
            digest.update(prompt.inputs[k].detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def _chance(y_train: np.ndarray, y_test: np.ndarray, regression: bool) -> float:
    """Majority-class rate on test; for regression, R^2 of the training mean on test."""
    if regression:
        resid = ((y_test - y_train.mean()) ** 2).sum()
        total = ((y_test - y_test.mean()) ** 2).sum()
        return float(1 - resid / total) if total > 0 else 0.0
    _, counts = np.unique(y_test, return_counts=True)
    return float(counts.max() / counts.sum())

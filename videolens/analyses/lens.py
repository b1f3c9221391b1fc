"""Logit lens: read any residual stream of a VideoLLM as a distribution over the vocabulary.

:class:`LogitLens` projects the residual stream at chosen positions and layers onto the
vocabulary and returns tidy pandas DataFrames (one row per layer, position and rank), so
that "which words do video tokens turn into, layer by layer" (the paper's
Figs. 4-5) is a groupby away.

Which residual stream? Layer ``l`` has an input and an output::

    layer_input(l)  == "blocks.{l}.hook_resid_pre"   (input of layer l; l = 0 is the embeddings)
    layer_output(l) == "blocks.{l}.hook_resid_post"  (output of layer l == input of layer l + 1,
                                                      except where Qwen3-VL's DeepStack adds visual
                                                      features between them, at video positions)

The paper's two analyses disagree: its logit lens probed layer *inputs* (and never the
input of the last layer), while its generation-probability analysis (Fig. 9) probed
layer *outputs*. Here every method takes ``site="input"`` or
``site="output"`` (or, for the logit lens, ``site="paper"``: the inputs of layers 0..L-2
and, for layer L-1, the final norm's output, as the paper's logit lens listed them) and
``layers`` (all by default), so you choose, and every row records the site it was read at.

Which projection? ``projection="unembed"`` uses the model's own head (``W_U``), so at the
output of the last layer, with the final norm, the lens gives exactly the model's output
distribution. ``projection="embed"`` uses the input embeddings ``W_E`` as the paper did,
``softmax(h @ E^T)``. ``apply_final_norm`` applies the model's final norm first; the
paper did not normalise intermediate layers. The paper's setting is
``LogitLens(model, projection="embed", apply_final_norm=False)`` at ``site="paper"``:
layer inputs for layers ``0 .. L-2``, and for ``L-1`` not its input (never probed) but the
final norm's output (``site="input"`` reads the input of ``L-1`` there instead).

Cost: only the positions asked for are projected (the reference projected every
position), only the needed residual streams are read (gathered at those
positions and kept on the CPU), and the forward pass stops after the last needed layer.

Axis glossary: ``layer`` (probed layers, in the order asked), ``pos`` (probed positions),
``d_model``, ``d_vocab``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from tqdm.auto import tqdm

from videolens.core.layout import TokenLayout, resolve_group
from videolens.core.prompt import VideoPrompt
from videolens.errors import LayerRangeError, VideoLensError

if TYPE_CHECKING:
    from videolens.core.hooked import HookedVideoLLM

Site = Literal["output", "input", "paper"]
Projection = Literal["unembed", "embed"]
PositionsLike = str | Sequence[int] | torch.Tensor | Callable[[TokenLayout], Any]
TokenLike = str | int

#: The paper's spatial bag (its logit-lens word lists, Fig. 4), object nouns.
SPATIAL_WORDS: tuple[str, ...] = (
    "bag", "bed", "blanket", "book", "box", "cabinet", "camera", "clothes", "cup", "glass", "bottle",
    "dish", "door", "floor", "food", "laptop", "paper", "person", "phone", "sandwich", "table",
)  # fmt: skip
#: The paper's temporal bag (its logit-lens word lists), actions and directions. (The reference built this
#: bag from the spatial words by mistake.)
TEMPORAL_WORDS: tuple[str, ...] = (
    "eat", "close", "do", "down", "drink", "hold", "on", "open", "put", "sit", "throw", "tidy", "take", "up",
)  # fmt: skip
#: Both bags, keyed as :func:`vocab_frequency` expects.
PAPER_BAGS: dict[str, tuple[str, ...]] = {"spatial": SPATIAL_WORDS, "temporal": TEMPORAL_WORDS}

RUN_COLUMNS = ["layer", "site", "position", "group", "t", "h", "w", "rank", "token_id", "token", "prob"]
TOKEN_PROB_COLUMNS = ["layer", "site", "position", "group", "t", "h", "w", "token", "token_id", "prob"]


# ---- residual-stream names and reading ---------------------------------------------------------
def layer_input(layer: int) -> str:
    """Hook name of the residual stream entering ``layer`` (``blocks.{l}.hook_resid_pre``)."""
    return f"blocks.{layer}.hook_resid_pre"


def layer_output(layer: int) -> str:
    """Hook name of the residual stream leaving ``layer`` (``blocks.{l}.hook_resid_post``)."""
    return f"blocks.{layer}.hook_resid_post"


def resid_name(layer: int, site: Site, n_layers: int | None = None) -> str:
    """Hook name of layer ``layer``'s input or output residual stream.

    ``site="paper"`` (the paper's logit lens, with ``n_layers``): the input of every layer but
    the last, whose entry is its output (the lens applies the final norm to it).
    """
    site = check_site(site, paper=True)
    if site == "paper":
        if n_layers is None:
            raise VideoLensError("site='paper' needs the model's depth (n_layers) to know its last layer.")
        return layer_output(layer) if layer == n_layers - 1 else layer_input(layer)
    return layer_input(layer) if site == "input" else layer_output(layer)


def check_site(site: str, paper: bool = False) -> Site:
    """Return ``site`` if it is ``"input"`` or ``"output"`` (or, for the logit lens, ``"paper"``);
    raise naming them otherwise."""
    allowed = ("input", "output", "paper") if paper else ("input", "output")
    if site not in allowed:
        raise VideoLensError(
            f"site={site!r} is not a residual stream; use site='input' (blocks.{{l}}.hook_resid_pre) "
            "or site='output' (blocks.{l}.hook_resid_post)"
            + (", or site='paper' (inputs, and the last layer's output through the final norm)." if paper else ".")
        )
    return site  # type: ignore[return-value]


def resolve_layers(model: HookedVideoLLM, layers: int | Iterable[int] | None) -> list[int]:
    """Layers as a list of non-negative indices (None: all); negative ones count from the end.

    Raises:
        LayerRangeError: for a layer outside the model, listing the valid layers.
    """
    n = model.cfg.n_layers
    if layers is None:
        return list(range(n))
    items = [layers] if isinstance(layers, (int, np.integer)) else list(layers)
    bad = [int(x) for x in items if not -n <= int(x) < n]
    if bad:
        raise LayerRangeError(
            f"Layers {bad} are outside the model; valid layers are 0..{n - 1} (or -{n}..-1 from the end)."
        )
    if not items:
        raise LayerRangeError(f"No layers given; pass layers=None for all, or some of 0..{n - 1}.")
    return list(dict.fromkeys(int(x) % n for x in items))


def resolve_positions(layout: TokenLayout, positions: PositionsLike) -> Int[torch.Tensor, " pos"]:
    """Sorted positions of a group name, a list of positions, or a callable on the layout.

    Unknown group names raise the layout's :class:`~videolens.GroupError`.
    """
    pos = resolve_group(layout, positions)
    if pos.numel() == 0:
        raise VideoLensError(f"positions={positions!r} selects no position of this prompt; pick a non-empty group.")
    return pos


def _check_single(prompt: object) -> VideoPrompt:
    if not isinstance(prompt, VideoPrompt):
        raise VideoLensError(
            f"Expected one VideoPrompt (from model.prepare), got {type(prompt).__name__}; loop over prompts instead."
        )
    return prompt


@torch.no_grad()
def read_resid(
    model: HookedVideoLLM,
    prompt: VideoPrompt,
    layers: Sequence[int],
    site: Site,
    positions: Int[torch.Tensor, " pos"],
    *,
    fwd_hooks: Sequence[tuple[Any, Callable]] = (),
    interventions: Any = None,
) -> Float[torch.Tensor, "layer pos d_model"]:
    """The residual streams of ``layers`` at ``site``, gathered at ``positions``, on the CPU.

    Only the named hooks are touched, each keeps only the asked positions, and the forward
    pass stops after the last layer needed. ``fwd_hooks`` (run before the readers, so their
    edits are seen) and ``interventions`` are passed to the model's forward.
    """
    _check_single(prompt)
    names = [resid_name(layer, site, model.cfg.n_layers) for layer in layers]
    store: dict[str, torch.Tensor] = {}

    def grab(act: torch.Tensor, hook: Any) -> None:
        store[hook.name] = act[0, positions.to(act.device)].detach().to("cpu")

    stop = max(layers) + 1
    kwargs: dict[str, Any] = {"interventions": interventions}
    if stop < model.cfg.n_layers:
        kwargs["stop_at_layer"] = stop
    hooks = [*fwd_hooks, *((name, grab) for name in dict.fromkeys(names))]
    model.run_with_hooks(prompt, fwd_hooks=hooks, **kwargs)
    return torch.stack([store[name] for name in names])


# ---- tokens -------------------------------------------------------------------------------------
def token_id(tokenizer: Any, token: TokenLike, d_vocab: int | None = None) -> int:
    """The id of one token given as an id, a vocabulary piece (``"A"``, ``"▁box"``) or a one-token string.

    Raises:
        VideoLensError: for a string of several tokens (pass one piece or its id) or an id
            outside the vocabulary.
    """
    if isinstance(token, (int, np.integer)):
        if d_vocab is not None and not 0 <= int(token) < d_vocab:
            raise VideoLensError(f"Token id {token} is outside the vocabulary (0..{d_vocab - 1}).")
        return int(token)
    piece = tokenizer.get_vocab().get(token)
    if piece is not None:
        return int(piece)
    ids = tokenizer.encode(token, add_special_tokens=False)
    if len(ids) != 1:
        pieces = tokenizer.convert_ids_to_tokens(ids)
        raise VideoLensError(
            f"{token!r} is {len(ids)} tokens {pieces} (ids {ids}); pass one piece or its id, "
            "or use first_token_ids() for the first sub-token of a word."
        )
    return int(ids[0])


def first_token_ids(tokenizer: Any, words: Iterable[str], prefix_space: bool = False) -> dict[str, int]:
    """Each word's first sub-token id (``tokenizer.encode(word)[0]``, no special tokens), as the paper reduced its bags.

    Args:
        prefix_space: encode ``" " + word`` instead. SentencePiece tokenizers (Llama, the
            paper's LLaVA) already give the word-initial piece (``"▁box"``); byte-level BPE
            tokenizers (Qwen, LLaVA-OneVision) give ``"box"`` for the bare word but ``"Ġbox"``
            mid-sentence, so ``prefix_space=True`` matches the usual in-text token there.

    Warns when several words share a first sub-token: :func:`vocab_frequency` counts them as one row.
    """
    out: dict[str, int] = {}
    for word in words:
        ids = tokenizer.encode(f" {word}" if prefix_space else word, add_special_tokens=False)
        if not ids:
            raise VideoLensError(f"The word {word!r} has no tokens; remove it from the bag.")
        out[word] = int(ids[0])
    shared: dict[int, list[str]] = {}
    for word, tid in out.items():
        shared.setdefault(tid, []).append(word)
    clashes = [ws for ws in shared.values() if len(ws) > 1]
    if clashes:
        warnings.warn(
            f"Bag words share a first sub-token and are counted as one: {clashes}.",
            stacklevel=2,
        )
    return out


def _decode_ids(tokenizer: Any, ids: np.ndarray) -> np.ndarray:
    """Decode each id to its string once (vectorised over repeats)."""
    uniq, inverse = np.unique(ids, return_inverse=True)
    text = np.array([tokenizer.decode([int(i)]) for i in uniq], dtype=object)
    return text[inverse.reshape(-1)].reshape(ids.shape)


def _position_table(layout: TokenLayout, positions: Int[torch.Tensor, " pos"]) -> pd.DataFrame:
    """One row per position: its leaf group and, for frame tokens, ``(t, h, w)``."""
    leaf = np.empty(layout.seq_len, dtype=object)
    for name, pos in layout.leaves.items():
        leaf[pos] = name
    coords = layout.video_coords()
    pos = positions.tolist()
    thw = [coords.get(p, (None, None, None)) for p in pos]
    table = pd.DataFrame({"position": pos, "group": leaf[pos]})
    for i, axis in enumerate("thw"):
        table[axis] = pd.array([c[i] for c in thw], dtype="Int64")
    return table


# ---- the lens -----------------------------------------------------------------------------------
class LogitLens:
    """Project residual streams at chosen positions and layers onto the vocabulary.

    Args:
        model: the :class:`~videolens.HookedVideoLLM` to read.
        projection: ``"unembed"`` (the model's head ``W_U``; at the last layer's output with
            the final norm this is the model's own distribution) or ``"embed"`` (the input
            embeddings ``W_E``: ``softmax(h @ W_E^T)``, the paper's choice).
        apply_final_norm: apply the model's final norm before projecting (the paper did not,
            for intermediate layers).

    Example:
        >>> lens = LogitLens(model)  # doctest: +SKIP
        >>> lens.run(prompt, positions="last", top_k=5)  # doctest: +SKIP
        >>> lens.video_tokens(prompt, site="input").query("rank == 1")  # doctest: +SKIP
        >>> lens.token_probs(prompt, ["A", "B", "C"], site="output")  # doctest: +SKIP

    Pitfall: ``site`` decides which residual stream ``layer`` means (see the module
    docstring); ``site="output", layer=l`` equals ``site="input", layer=l+1``, but at the
    video positions of the layers where Qwen3-VL's DeepStack adds visual features in between.
    """

    def __init__(self, model: HookedVideoLLM, projection: Projection = "unembed", apply_final_norm: bool = True):
        if projection not in ("unembed", "embed"):
            raise VideoLensError(
                f"projection={projection!r} is unknown; use 'unembed' (W_U) or 'embed' (W_E, the paper's)."
            )
        self.model = model
        self.projection: Projection = projection
        self.apply_final_norm = apply_final_norm

    def __repr__(self) -> str:
        return f"LogitLens(projection={self.projection!r}, apply_final_norm={self.apply_final_norm})"

    # ---- projection ------------------------------------------------------------------------------
    def logits(self, resid: Float[torch.Tensor, "... d_model"]) -> Float[torch.Tensor, "... d_vocab"]:
        """Lens logits of residual-stream vectors (moved to the model's device and dtype)."""
        model = self.model
        resid = resid.to(device=model.cfg.device, dtype=model.cfg.dtype)
        if self.projection == "unembed":
            return model.resid_to_logits(resid, apply_ln=self.apply_final_norm)
        if self.apply_final_norm:
            resid = model.ln_final.hf_module(resid)
        return resid @ model.W_E.T

    def probs(self, resid: Float[torch.Tensor, "... d_model"]) -> Float[torch.Tensor, "... d_vocab"]:
        """Lens probabilities (softmax over the vocabulary, in float32)."""
        return self.logits(resid).float().softmax(-1)

    # ---- reading ---------------------------------------------------------------------------------
    def _read(
        self, prompt: VideoPrompt, positions: PositionsLike, layers: Any, site: Site, interventions: Any
    ) -> tuple[list[int], Int[torch.Tensor, " pos"], Float[torch.Tensor, "layer pos d_model"]]:
        prompt = _check_single(prompt)
        site = check_site(site, paper=True)
        layer_list = resolve_layers(self.model, layers)
        pos = resolve_positions(prompt.layout, positions)
        resid = read_resid(self.model, prompt, layer_list, site, pos, interventions=interventions)
        last = self.model.cfg.n_layers - 1
        if site == "paper" and not self.apply_final_norm and last in layer_list:
            # the paper's last entry is the final norm's output (HF's last hidden state), normed
            # here because this lens normalises no other layer
            i = layer_list.index(last)
            model = self.model
            normed = model.ln_final.hf_module(resid[i].to(device=model.cfg.device, dtype=model.cfg.dtype))
            resid = resid.clone()
            resid[i] = normed.to(device=resid.device, dtype=resid.dtype)
        return layer_list, pos, resid

    @torch.no_grad()
    def run(
        self,
        prompt: VideoPrompt,
        positions: PositionsLike = "last",
        layers: int | Iterable[int] | None = None,
        site: Site = "output",
        top_k: int = 10,
        tokens: Sequence[TokenLike] | None = None,
        *,
        interventions: Any = None,
    ) -> pd.DataFrame:
        """Top-k tokens of the lens at each (layer, position).

        Args:
            prompt: one prompt from ``model.prepare``.
            positions: a group name (``"last"``, ``"video"``, ``"frame(3)"``, ``"question"``),
                a list of positions, or ``fn(layout) -> positions``.
            layers: layer indices (None: all; negative counts from the end).
            site: ``"output"`` (``hook_resid_post``), ``"input"`` (``hook_resid_pre``) or
                ``"paper"`` (inputs; the last layer's output through the final norm).
            top_k: how many tokens per (layer, position).
            tokens: if given, return :meth:`token_probs` for these tokens instead.
            interventions: knockouts to apply during the forward pass.

        Returns:
            One row per (layer, position, rank): ``layer, site, position, group, t, h, w,
            rank, token_id, token, prob``; ``rank`` starts at 1, ``group`` is the position's
            leaf group, ``t, h, w`` are set for frame tokens and ``<NA>`` elsewhere.
        """
        if tokens is not None:
            return self.token_probs(prompt, tokens, positions, layers, site, interventions=interventions)
        if not 1 <= top_k <= self.model.cfg.d_vocab:
            raise VideoLensError(f"top_k={top_k} must be between 1 and the vocabulary size {self.model.cfg.d_vocab}.")
        layer_list, pos, resid = self._read(prompt, positions, layers, site, interventions)
        probs, ids = [], []
        for i in range(len(layer_list)):
            top = self.probs(resid[i]).topk(top_k, dim=-1)
            probs.append(top.values.cpu())
            ids.append(top.indices.cpu())
        prob = torch.stack(probs).numpy()  # (layer, pos, k)
        tid = torch.stack(ids).numpy()
        n_layer, n_pos = len(layer_list), len(pos)
        meta = _position_table(prompt.layout, pos)
        idx_layer, idx_pos, idx_rank = np.meshgrid(
            np.arange(n_layer), np.arange(n_pos), np.arange(top_k), indexing="ij"
        )
        df = meta.iloc[idx_pos.reshape(-1)].reset_index(drop=True)
        df.insert(0, "layer", np.asarray(layer_list)[idx_layer.reshape(-1)])
        df.insert(1, "site", site)
        df["rank"] = idx_rank.reshape(-1) + 1
        df["token_id"] = tid.reshape(-1)
        df["token"] = _decode_ids(self.model.tokenizer, tid.reshape(-1))
        df["prob"] = prob.reshape(-1)
        return df[RUN_COLUMNS]

    @torch.no_grad()
    def token_probs(
        self,
        prompt: VideoPrompt,
        tokens: Sequence[TokenLike],
        positions: PositionsLike = "last",
        layers: int | Iterable[int] | None = None,
        site: Site = "output",
        *,
        interventions: Any = None,
    ) -> pd.DataFrame:
        """Lens probability of given tokens at each (layer, position).

        Args:
            tokens: ids, vocabulary pieces (``"A"``, matched as the raw piece first) or
                one-token strings. A word of several tokens raises; pass its first piece.

        Returns:
            One row per (layer, position, token): ``layer, site, position, group, t, h, w,
            token, token_id, prob``; ``token`` is the string as given (or the decoded id).
        """
        tokenizer = self.model.tokenizer
        if isinstance(tokens, (str, int)):
            tokens = [tokens]
        tids = [token_id(tokenizer, t, self.model.cfg.d_vocab) for t in tokens]
        labels = [t if isinstance(t, str) else tokenizer.decode([int(t)]) for t in tokens]
        layer_list, pos, resid = self._read(prompt, positions, layers, site, interventions)
        prob = torch.stack([self.probs(resid[i])[:, tids].cpu() for i in range(len(layer_list))]).numpy()
        n_layer, n_pos, n_tok = prob.shape
        meta = _position_table(prompt.layout, pos)
        idx_layer, idx_pos, idx_tok = np.meshgrid(np.arange(n_layer), np.arange(n_pos), np.arange(n_tok), indexing="ij")
        df = meta.iloc[idx_pos.reshape(-1)].reset_index(drop=True)
        df.insert(0, "layer", np.asarray(layer_list)[idx_layer.reshape(-1)])
        df.insert(1, "site", site)
        df["token"] = np.asarray(labels, dtype=object)[idx_tok.reshape(-1)]
        df["token_id"] = np.asarray(tids)[idx_tok.reshape(-1)]
        df["prob"] = prob.reshape(-1)
        return df[TOKEN_PROB_COLUMNS]

    def video_tokens(
        self,
        prompt: VideoPrompt,
        layers: int | Iterable[int] | None = None,
        site: Site = "input",
        top_k: int = 5,
        *,
        interventions: Any = None,
    ) -> pd.DataFrame:
        """:meth:`run` over every video token (``t, h, w`` set for frame tokens).

        Defaults follow the paper (layer inputs, top 5 kept per token). Tokens that belong
        to no frame (LLaVA-OneVision's newline, group ``video_extra``) have ``<NA>`` coords.
        """
        return self.run(prompt, "video", layers, site, top_k, interventions=interventions)

    @torch.no_grad()
    def top1_ids(
        self,
        prompt: VideoPrompt,
        positions: PositionsLike = "video",
        layers: int | Iterable[int] | None = None,
        site: Site = "input",
        *,
        interventions: Any = None,
    ) -> tuple[list[int], Int[torch.Tensor, " pos"], Int[torch.Tensor, "layer pos"]]:
        """The lens's top-1 token id per (layer, position), without building a DataFrame.

        Returns:
            ``(layers, positions, ids)`` with ``ids`` of shape ``(layer, pos)`` on the CPU.
        """
        layer_list, pos, resid = self._read(prompt, positions, layers, site, interventions)
        ids = torch.stack([self.logits(resid[i]).argmax(-1).cpu() for i in range(len(layer_list))])
        return layer_list, pos, ids


# ---- vocabulary frequency (the paper's Fig. 4) ----------------------------------------------------------
def layer_bins(
    layers: Iterable[int], bin_size: int, n_layers: int | None = None
) -> list[tuple[str, int, int, list[int]]]:
    """Non-overlapping bins ``[0, b), [b, 2b), ...`` of the given layers.

    Args:
        layers: the (0-based) layers to bin.
        bin_size: layers per bin.
        n_layers: the model's depth; the last bin is clipped to it (``"31-32"`` of 32); default:
            clipped to the last given layer.

    Returns:
        ``(label, first_layer, last_layer, members)`` per non-empty bin, in order; labels are
        1-based as in the paper (``"1-5"``, ``"6-10"``; a one-layer bin is ``"7"``), while
        ``first_layer``/``last_layer`` are 0-based like every other layer index here.
        ``members`` are the given layers in the bin (all of it unless ``layers`` is a subset).
    """
    if bin_size < 1:
        raise VideoLensError(f"bin_size={bin_size} must be at least 1.")
    layers = sorted(set(int(x) for x in layers))
    top = (n_layers - 1) if n_layers is not None else max(layers, default=0)
    groups: dict[int, list[int]] = {}
    for layer in layers:
        groups.setdefault(layer // bin_size, []).append(layer)
    out = []
    for b, members in groups.items():
        first, last = b * bin_size, min(b * bin_size + bin_size - 1, top)
        label = f"{first + 1}" if first == last else f"{first + 1}-{last + 1}"
        out.append((label, first, last, members))
    return out


def count_top1(
    lens: LogitLens,
    prompts: Iterable[VideoPrompt],
    layers: int | Iterable[int] | None = None,
    site: Site = "input",
    positions: PositionsLike = "video",
    progress: bool = True,
) -> tuple[list[int], np.ndarray]:
    """Count the lens's top-1 tokens over the given positions of all prompts, per layer.

    Returns:
        ``(layers, counts)`` with ``counts[i, v]`` = how often token ``v`` was top-1 at
        ``layers[i]``.
    """
    layer_list = resolve_layers(lens.model, layers)
    counts = np.zeros((len(layer_list), lens.model.cfg.d_vocab), dtype=np.int64)
    for prompt in tqdm(prompts, desc="logit lens", disable=not progress):
        _, _, ids = lens.top1_ids(prompt, positions, layer_list, site)
        for i in range(len(layer_list)):
            counts[i] += np.bincount(ids[i].numpy(), minlength=counts.shape[1])
    return layer_list, counts


def vocab_frequency(
    model_or_lens: HookedVideoLLM | LogitLens,
    prompts: Iterable[VideoPrompt],
    bags: Mapping[str, Sequence[str]] | None = None,
    layers: int | Iterable[int] | None = None,
    bin_size: int = 5,
    min_count: int = 0,
    *,
    site: Site = "input",
    positions: PositionsLike = "video",
    prefix_space: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """How often each bag word is the lens's top-1 token at video tokens, per layer bin (Fig. 4).

    As the paper counts: top-1 tokens over all video tokens of all prompts per layer, by
    their decoded text (so ``"▁on"`` and ``"on"`` both count as ``on``), each bag word
    reduced to the text of its first sub-token (words that share it are one row). The counts
    are summed in non-overlapping bins of ``bin_size`` layers (the reference's bins
    overlapped: inclusive slicing made them 6 layers wide); words whose total is below
    ``min_count`` are dropped (the paper used 100); an ``ALL`` row sums the words per bin;
    each row is normalised over the bins (``frac``: where in depth that word is top-1) and
    ``ALL_NORM`` is the mean of the words' normalised rows (words never top-1 left out).

    Args:
        model_or_lens: a :class:`LogitLens`, or a model (then ``LogitLens(model)``, the
            unembedding with the final norm; the paper's setting is
            ``LogitLens(model, projection="embed", apply_final_norm=False)``).
        prompts: the prompts (e.g. the correctly answered ones).
        bags: ``{bag name: words}``; default :data:`PAPER_BAGS`. Words are reduced to their
            first sub-token (:func:`first_token_ids`, with ``prefix_space``).
        layers: the layers counted (None: all).
        bin_size: layers per bin.
        min_count: drop words with fewer top-1 hits in total.
        site: ``"input"``, ``"output"`` or ``"paper"`` (the paper's: see the module docstring).
        positions: the positions counted (default every video token).
        prefix_space: reduce ``" " + word`` instead of the bare word (see :func:`first_token_ids`).
        progress: show a progress bar.

    Returns:
        Tidy rows ``bag, word, token, token_id, bin, first_layer, last_layer, count, frac``,
        one per (word, bin), with ``word`` a bag word (several joined by ``/`` where they
        share a first sub-token), ``"ALL"`` or ``"ALL_NORM"``; ``token`` the counted text,
        ``token_id`` the word's first sub-token id (``<NA>`` for ALL rows); ``bin`` in
        ``"1-5", "6-10", ...`` (1-based labels; the ``*_layer`` columns are 0-based);
        ``count`` is ``<NA>`` for ``ALL_NORM``. The paper's table:
        ``df.pivot(index="word", columns="bin", values="count")``.
    """
    lens = model_or_lens if isinstance(model_or_lens, LogitLens) else LogitLens(model_or_lens)
    bags = PAPER_BAGS if bags is None else bags
    tokenizer = lens.model.tokenizer
    bag_ids = {name: first_token_ids(tokenizer, words, prefix_space) for name, words in bags.items()}
    layer_list, counts = count_top1(lens, prompts, layers, site, positions, progress)
    seen = np.flatnonzero(counts.sum(0))
    by_text: dict[str, np.ndarray] = {}  # decoded text -> (layer,) counts, summed over the ids that decode to it
    for tid, text in zip(seen, _decode_ids(tokenizer, seen)):
        by_text[text] = by_text.get(text, 0) + counts[:, tid]
    row_of = {layer: i for i, layer in enumerate(layer_list)}
    bins = layer_bins(layer_list, bin_size, lens.model.cfg.n_layers)
    frames = [
        _bag_frequency(name, ids, by_text, len(layer_list), row_of, bins, min_count, tokenizer)
        for name, ids in bag_ids.items()
    ]
    return (
        pd.concat(frames, ignore_index=True)[FREQUENCY_COLUMNS] if frames else pd.DataFrame(columns=FREQUENCY_COLUMNS)
    )


FREQUENCY_COLUMNS = ["bag", "word", "token", "token_id", "bin", "first_layer", "last_layer", "count", "frac"]


def _bag_frequency(
    bag: str,
    word_ids: dict[str, int],
    by_text: dict[str, np.ndarray],
    n_rows: int,
    row_of: dict[int, int],
    bins: list[tuple[str, int, int, list[int]]],
    min_count: int,
    tokenizer: Any,
) -> pd.DataFrame:
    """One bag's (word x bin) counts with its ALL and ALL_NORM rows (see :func:`vocab_frequency`)."""
    texts: dict[str, tuple[list[str], int]] = {}  # first sub-token's text -> (its words, its id)
    for word, tid in word_ids.items():
        text = tokenizer.decode([tid])
        texts.setdefault(text, ([], tid))[0].append(word)
    keys = sorted(texts)  # the reference's sorted, deduplicated first sub-tokens
    zero = np.zeros(n_rows, dtype=np.int64)
    per_layer = np.stack([by_text.get(k, zero) for k in keys]) if keys else np.zeros((0, n_rows), dtype=np.int64)
    table = np.stack([per_layer[:, [row_of[m] for m in members]].sum(1) for *_, members in bins], axis=1)
    keep = table.sum(1) >= min_count
    keys, table = [k for k, kept in zip(keys, keep) if kept], table[keep]  # (word, bin)
    all_counts = table.sum(0)
    totals = table.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(totals > 0, table / np.maximum(totals, 1), np.nan)
        all_frac = all_counts / all_counts.sum() if all_counts.sum() else np.full(len(bins), np.nan)
    hit = totals[:, 0] > 0
    norm = frac[hit].mean(0) if hit.any() else np.full(len(bins), np.nan)
    rows = [("/".join(texts[k][0]), k, texts[k][1], table[i], frac[i]) for i, k in enumerate(keys)]
    rows += [("ALL", None, None, all_counts, all_frac), ("ALL_NORM", None, None, [None] * len(bins), norm)]
    out = [
        (bag, word, text, tid, label, first, last, cnt[b], fr[b])
        for word, text, tid, cnt, fr in rows
        for b, (label, first, last, _) in enumerate(bins)
    ]
    df = pd.DataFrame(out, columns=FREQUENCY_COLUMNS)
    for col in ("token_id", "first_layer", "last_layer", "count"):
        df[col] = pd.array(df[col], dtype="Int64")
    df["frac"] = df["frac"].astype(float)
    return df

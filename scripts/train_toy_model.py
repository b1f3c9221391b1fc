"""Train the toy VideoLLM (videolens/toy-moving-shapes) from scratch on synthetic videos.

    python scripts/train_toy_model.py --out toy_out --steps 12000 --device cuda

Data are drawn fresh every step (never repeated) by DataLoader workers that run the real
LLaVA-NeXT-Video processor, so training sees exactly what ``HookedVideoLLM.prepare``
produces. The schedule runs on progress p = max(step / steps, elapsed / max-minutes), so a run
always completes it within its time budget: learning rate warms up over the first 5% and
follows a cosine to zero; curriculum (needed: with shuffled options from the start the
model stays at chance): options in a fixed order until p = ``--fixed``, then shuffled
with a probability that ramps to 1 by p = ``--fixed + --ramp``. Loss: cross-entropy of the answer letter at the
last position. Writes the model and processor (``save_pretrained``) and
``train_log.json`` (seed, steps, time, loss curve, held-out accuracy per task).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, IterableDataset

from videolens.adapters import VideoLLMAdapter
from videolens.core.layout import LETTERS
from videolens.core.prompt import PAPER_ANSWER_PREFIX, PAPER_SYSTEM, prompt_text
from videolens.data.synthetic import TASKS, make_dataset, make_sample
from videolens.toy import build_toy_processor, build_toy_tokenizer, build_untrained_toy


def encode(processor, samples) -> dict[str, torch.Tensor]:
    """Processor inputs and answer-letter ids for a list of samples."""
    adapter = VideoLLMAdapter()  # only its '<video>' placeholder is used (the processor has a chat template)
    texts = [
        prompt_text(processor, adapter, s.question, s.options, PAPER_ANSWER_PREFIX, PAPER_SYSTEM)[0] for s in samples
    ]
    batch = dict(processor(text=texts, videos=[s.video for s in samples], return_tensors="pt", padding=True))
    letters = processor.tokenizer.convert_tokens_to_ids([LETTERS[int(s.answer)] for s in samples])
    batch["labels"] = torch.tensor(letters)
    return batch


class Stream(IterableDataset):
    """Endless batches; the shuffle probability follows the trainer's current step."""

    def __init__(self, batch: int, seed: int, progress: mp.Value, fixed: float, ramp: float) -> None:
        self.batch, self.seed, self.progress, self.fixed, self.ramp = batch, seed, progress, fixed, ramp

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info else 0])
        processor = build_toy_processor(build_toy_tokenizer())
        while True:
            p_shuffle = min(1.0, max(0.0, (self.progress.value - self.fixed) / self.ramp))
            tasks = rng.choice(TASKS, size=self.batch)
            samples = [make_sample(str(t), rng, shuffle_options=bool(rng.random() < p_shuffle)) for t in tasks]
            yield encode(processor, samples)


@torch.no_grad()
def evaluate(model, processor, device, n_per_task: int = 200, seed: int = 12345) -> dict[str, float]:
    """Held-out accuracy per task (options shuffled; a seed never used in training)."""
    model.eval()
    data = make_dataset(n_per_task, seed=seed)
    correct = {t: 0 for t in TASKS}
    for i in range(0, len(data), 250):
        chunk = data[i : i + 250]
        batch = {k: v.to(device) for k, v in encode(processor, chunk).items()}
        labels = batch.pop("labels")
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(**batch, logits_to_keep=1).logits[:, -1]
        for s, ok in zip(chunk, (logits.argmax(-1) == labels).tolist()):
            correct[s.task] += ok
    model.train()
    return {t: correct[t] / n_per_task for t in TASKS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=12000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--fixed", type=float, default=0.3, help="progress until which options keep a fixed order")
    ap.add_argument("--ramp", type=float, default=0.25, help="progress over which shuffling ramps in")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=12)
    ap.add_argument("--max-minutes", type=float, default=8.0, help="stop (and save) after this long")
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--init", type=Path, default=None, help="continue from a saved toy model instead of random weights")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    model, processor = build_untrained_toy()
    if args.init is not None:
        model = type(model).from_pretrained(args.init)
    model.config._attn_implementation = "sdpa"
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    progress = mp.Value("d", 0.0)
    loader = DataLoader(
        Stream(args.batch, args.seed, progress, args.fixed, args.ramp),
        batch_size=None,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
        prefetch_factor=4 if args.workers else None,
    )
    log: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "loss": [], "eval": []}
    start = time.time()
    running = 0.0
    for i, batch in enumerate(loader):
        p = max(i / args.steps, (time.time() - start) / (60 * args.max_minutes))
        if p >= 1.0:
            break
        progress.value = p
        lr = args.lr * (p / 0.05 if p < 0.05 else 0.5 * (1 + math.cos(math.pi * (p - 0.05) / 0.95)))
        for group in opt.param_groups:
            group["lr"] = lr
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        labels = batch.pop("labels")
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(**batch, logits_to_keep=1).logits[:, -1].float()
        loss = torch.nn.functional.cross_entropy(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        running += loss.item()
        if (i + 1) % 100 == 0:
            log["loss"].append([i + 1, round(p, 4), running / 100])
            if (i + 1) % 500 == 0:
                print(
                    f"step {i + 1} p={p:.2f} lr={lr:.2e} loss {running / 100:.4f} ({time.time() - start:.0f}s)",
                    flush=True,
                )
            running = 0.0
        if (i + 1) % args.eval_every == 0:
            acc = evaluate(model, processor, device, n_per_task=100)
            log["eval"].append([i + 1, acc])
            print(f"step {i + 1} held-out accuracy {acc}", flush=True)
    log["steps_run"] = i
    log["train_seconds"] = time.time() - start
    final = evaluate(model, processor, device)
    log["final_accuracy"] = final
    print("final held-out accuracy (200 per task):", final, flush=True)
    model.to(torch.float32).cpu().eval()
    model.config._attn_implementation = "sdpa"
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    processor.save_pretrained(args.out)
    log["device"] = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    log["torch"] = torch.__version__
    (args.out / "train_log.json").write_text(json.dumps(log, indent=1))


if __name__ == "__main__":
    main()

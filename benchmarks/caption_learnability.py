"""Is ``synthetic_captions`` learnable on a CPU in minutes, by a margin over the baselines?

Trains a random-init timm CNN + :class:`CaptionDecoder` outside the engine (so it checks the
dataset and the captioning parts alone), greedy-decodes the val split and prints CIDEr-D /
BLEU-4 of the model beside the two baselines, measured side by side in one run:

* most frequent train caption, for every image;
* nearest train caption by cosine similarity of the CNN's pooled features, both for the
  untrained CNN and for the CNN after captioning training.

    python benchmarks/caption_learnability.py --epochs 3 --threads 2

Wall times include dataset generation on first use (cached afterwards) and depend on how
busy the CPU is; the process CPU time printed beside them (over the thread count it used)
is what the same work takes on idle cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch

from vlbench.plugins.datasets import synthetic_captions
from vlbench.plugins.fusion._caption_decoder import CaptionDecoder, teacher_forced_loss
from vlbench.plugins.fusion._caption_vocab import WordVocabulary
from vlbench.plugins.fusion._decoding import beam_search, greedy
from vlbench.plugins.tasks._caption_metrics import caption_scores, most_frequent_caption, nearest_train_caption

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255


def images_of(split, size: int) -> torch.Tensor:
    x = torch.from_numpy(np.stack([split.load_image(i) for i in range(len(split))])).permute(0, 3, 1, 2).float()
    if x.shape[-1] != size:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (x - MEAN) / STD


class Captioner(torch.nn.Module):
    def __init__(self, backbone: str, vocab: WordVocabulary, args: argparse.Namespace) -> None:
        super().__init__()
        self.cnn = timm.create_model(backbone, pretrained=False, num_classes=0)
        self.decoder = CaptionDecoder(
            visual_dim=self.cnn.num_features,
            vocab_size=len(vocab),
            d_model=args.d_model,
            layers=args.layers,
            heads=args.heads,
            ff_dim=4 * args.d_model,
            dropout=0.1,
            max_length=args.max_length,
            keep_ratio=args.keep_ratio,
            prune_rule=args.rule,
        )

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.cnn.forward_features(x).flatten(2).transpose(1, 2)  # [B, h*w, C] row-major

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.cnn.forward_head(self.cnn.forward_features(x), pre_logits=True)


@torch.no_grad()
def embed(model: Captioner, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    model.eval()
    return torch.cat([model.pooled(x[i : i + batch]) for i in range(0, len(x), batch)])


@torch.no_grad()
def decode(model: Captioner, vocab: WordVocabulary, x: torch.Tensor, beam: int, max_length: int, batch: int = 250) -> list[str]:
    model.eval()
    out: list[str] = []
    for i in range(0, len(x), batch):
        memory, mask = model.decoder.memory(model.tokens(x[i : i + batch]), None)
        b = len(memory)
        if beam == 1:
            ids = greedy(
                lambda t, memory=memory, mask=mask: model.decoder.step(memory, mask, t), b, vocab.bos_id, vocab.eos_id, max_length
            )
        else:
            expanded = memory.repeat_interleave(beam, 0)
            ids = beam_search(
                lambda t, expanded=expanded: model.decoder.step(expanded, None, t),
                b,
                vocab.bos_id,
                vocab.eos_id,
                max_length,
                beam,
            )
        out.extend(vocab.decode(ids))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="resnet10t")
    parser.add_argument("--size", type=int, default=64, help="input resolution (square)")
    parser.add_argument("--n-images", type=int, nargs=3, default=[4000, 500, 500])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=16)
    parser.add_argument("--keep-ratio", type=float, default=1.0)
    parser.add_argument("--rule", default="l2")
    parser.add_argument("--beam", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-every-epoch", action="store_true", help="also score val after each epoch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "vlbench-caption-learnability")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    started, cpu_started = time.perf_counter(), time.process_time()
    data = synthetic_captions.factory(args.cache, args.seed, n_images=args.n_images, image_size=[args.size, args.size])
    train, val = data.splits["train"], data.splits["val"]
    x_train, x_val = images_of(train, args.size), images_of(val, args.size)
    vocab = WordVocabulary.fit([c for caps in train.captions for c in caps])
    refs = {i: list(caps) for i, caps in zip(val.ids, val.captions, strict=True)}
    print(
        f"data {time.perf_counter() - started:.1f}s; vocabulary {len(vocab)} ids; threads {torch.get_num_threads()}", flush=True
    )

    model = Captioner(args.backbone, vocab, args)
    untrained_nn = nearest_train_caption(embed(model, x_val), embed(model, x_train), train.captions, val.ids)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    steps = args.epochs * (len(train) // args.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=args.lr, total_steps=steps, pct_start=0.1)
    rng = np.random.default_rng(args.seed)
    train_started = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = rng.permutation(len(train))
        losses = []
        for start in range(0, len(order) - args.batch + 1, args.batch):
            index = order[start : start + args.batch]
            # One reference per image per step, drawn afresh each epoch.
            texts = [train.captions[i][rng.integers(len(train.captions[i]))] for i in index]
            ids = vocab.encode(texts, args.max_length)
            memory, mask = model.decoder.memory(model.tokens(x_train[index]), None)
            loss = teacher_forced_loss(model.decoder(memory, mask, ids), ids)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(loss.item())
        progress = f"epoch {epoch + 1}: loss {np.mean(losses):.3f}, wall {time.perf_counter() - train_started:.0f}s, CPU {time.process_time() - cpu_started:.0f}s"
        if args.eval_every_epoch and epoch + 1 < args.epochs:
            cands = dict(zip(val.ids, decode(model, vocab, x_val, 1, args.max_length), strict=True))
            progress += f", val CIDEr-D {caption_scores(cands, refs).corpus['CIDEr-D']:.1f} (greedy)"
        print(progress, flush=True)
    train_s = time.perf_counter() - train_started

    decode_started = time.perf_counter()
    candidates = dict(zip(val.ids, decode(model, vocab, x_val, args.beam, args.max_length), strict=True))
    decode_s = time.perf_counter() - decode_started
    rows = {
        "model": candidates,
        "most frequent train caption": most_frequent_caption(train.captions, val.ids),
        "nearest train caption (untrained CNN)": untrained_nn,
        "nearest train caption (trained CNN)": nearest_train_caption(
            embed(model, x_val), embed(model, x_train), train.captions, val.ids
        ),
    }
    cpu_s = time.process_time() - cpu_started
    print(
        f"\nval, {len(val)} images; wall: train {train_s:.0f}s, decode {decode_s:.1f}s, total {time.perf_counter() - started:.0f}s; "
        f"process CPU time {cpu_s:.0f}s over {torch.get_num_threads()} thread(s) (about the wall time on idle cores)"
    )
    print(f"{'':40s} {'CIDEr-D':>8s} {'BLEU-4':>8s} {'BLEU-1':>8s}")
    for name, cands in rows.items():
        s = caption_scores(cands, refs).corpus
        print(f"{name:40s} {s['CIDEr-D']:8.1f} {s['BLEU-4']:8.1f} {s['BLEU-1']:8.1f}")
    print("\nexamples:")
    for i in val.ids[:5]:
        print(f"  {candidates[i]!r:45s} refs: {refs[i][:2]}")


if __name__ == "__main__":
    main()

"""The predictor's backbone (the first L layers of the target model, pooled) and its trained heads.

Backbone: token embeddings, then decoder layers 1..L of the target model (no extra weights), no
KV cache; the hidden state after layer L is pooled into ``[mean over tokens ; last token]``
(2 x hidden). The last token is the chat template's ``assistant`` header, which attends to the
whole prompt. Input is bounded: a prompt longer than ``max_input_tokens`` keeps its first and
last halves, so the predictor's time is bounded too.

Heads (small MLPs on z-scored features): a bucket classifier (cross-entropy on ceil(N / B),
prediction = upper edge of the argmax bucket) or a regression head (MSE on N / N_max).
"""
from __future__ import annotations

import copy
import math
import pathlib
import pickle
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..deferred_press import pool
from ..length_distribution import LengthDistribution
from .buckets import class_of, length_of_class, num_buckets

HEAD_FORMAT = 1


def truncate_ids(ids: Sequence[int], max_input_tokens: int) -> list[int]:
    ids = list(ids)
    if max_input_tokens <= 0 or len(ids) <= max_input_tokens:
        return ids
    head = max_input_tokens // 2
    return ids[:head] + ids[len(ids) - (max_input_tokens - head):]


@torch.inference_mode()
def layer_features(model, ids: Sequence[int], layers: Sequence[int], max_input_tokens: int = 512) -> dict[int, torch.Tensor]:
    """Pooled features after each layer count in ``layers`` (1-based L), for one prompt.

    Runs only the first max(layers) decoder layers. Returns {L: tensor[2 * hidden]} (float32): the
    same states and pooling a ``DeferredPress`` reads from the served prefill.
    """
    base = model.model if hasattr(model, "model") else model
    ids = truncate_ids(ids, max_input_tokens)
    if not ids:
        raise ValueError("empty prompt")
    input_ids = torch.tensor([ids], dtype=torch.long)
    hidden = base.embed_tokens(input_ids)
    position_ids = torch.arange(len(ids), dtype=torch.long)[None]
    position_embeddings = base.rotary_emb(hidden, position_ids=position_ids)
    wanted = sorted(set(int(x) for x in layers))
    if wanted[0] < 1 or wanted[-1] > len(base.layers):
        raise ValueError(f"layers must be in 1..{len(base.layers)}")
    out = {}
    for i, layer in enumerate(base.layers[: wanted[-1]]):
        # attention_mask None + a single unpadded sequence: SDPA applies the causal mask itself.
        hidden = layer(hidden, attention_mask=None, position_ids=position_ids,
                       position_embeddings=position_embeddings, use_cache=False)
        if isinstance(hidden, tuple):
            hidden = hidden[0]
        if i + 1 in wanted:
            # the last layer's state as the model reads it, after the final norm (deferred_press.state_module)
            out[i + 1] = pool((base.norm(hidden) if i + 1 == len(base.layers) else hidden)[0])
    return out


@dataclass
class HeadConfig:
    kind: str = "classifier"          # classifier | regression
    width: int = 16                   # bucket width B (classifier)
    max_tokens: int = 256             # label cap N_max (the serving cap)
    layers: int = 8                   # backbone depth L
    max_input_tokens: int = 512
    hidden: int = 128
    feature_dim: int = 1152
    model_name: str = ""
    model_hidden: int = 0
    bound_factor: float = 0.0         # calibrated factor q (0: not calibrated)
    bound_coverage: float = 0.95
    paper_k: float = 5.0
    point: str = "argmax"             # classifier's point prediction: the likeliest bucket, or the median of its distribution
    temperature: float = 1.0          # softmax temperature of the distribution, fitted on validation (calibration)
    extra: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return num_buckets(self.max_tokens, self.width) if self.kind == "classifier" else 1


class LengthHead(nn.Module):
    def __init__(self, cfg: HeadConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("mu", torch.zeros(cfg.feature_dim))
        self.register_buffer("sigma", torch.ones(cfg.feature_dim))
        self.net = nn.Sequential(
            nn.Linear(cfg.feature_dim, cfg.hidden), nn.GELU(), nn.Dropout(0.2), nn.Linear(cfg.hidden, cfg.num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mu) / self.sigma)

    @torch.inference_mode()
    def distribution(self, x: torch.Tensor) -> tuple[list[int], np.ndarray]:
        """The classifier's calibrated distribution: (bucket upper ends, probabilities [n, K]).
        The top bucket means "at least the label cap"."""
        self.eval()
        return self._calibrated(self(x.float()))

    def _calibrated(self, logits: torch.Tensor) -> tuple[list[int], np.ndarray]:
        c = self.cfg
        probs = torch.softmax(logits.float() / max(c.temperature, 1e-3), -1).numpy()
        return [length_of_class(k, c.width, c.max_tokens) for k in range(c.num_classes)], probs

    @torch.inference_mode()
    def predict_lengths(self, x: torch.Tensor) -> np.ndarray:
        """Predicted lengths N_hat (int, 1..max_tokens) for a feature matrix."""
        self.eval()
        out = self(x.float())
        c = self.cfg
        if c.kind == "classifier":
            if c.point == "median":
                # The median of the calibrated distribution the planner is given, read inside its
                # bucket: it minimises the expected absolute error (with answers that either stop
                # early or loop, the likeliest bucket often does not), and a 2-token yes/no answer is
                # no longer predicted at its bucket's upper end, 16.
                ends, probs = self._calibrated(out)  # the forward pass above, not a second one
                return np.array([LengthDistribution.of(ends, p).median() for p in probs], dtype=int)
            return np.array([length_of_class(k, c.width, c.max_tokens) for k in out.argmax(-1).numpy()], dtype=int)
        return np.clip(np.rint(out[:, 0].numpy() * c.max_tokens), 1, c.max_tokens).astype(int)

    # --- files ------------------------------------------------------------------------------------
    def save(self, path: str | pathlib.Path) -> None:
        """A small file: config + fp16 weights (the z-score buffers stay fp32)."""
        state = {k: (v.half() if k.startswith("net.") else v.float()).clone() for k, v in self.state_dict().items()}
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"format": HEAD_FORMAT, "config": asdict(self.cfg), "state": state}, path)

    @classmethod
    def load(cls, path: str | pathlib.Path) -> "LengthHead":
        """Read a head saved by ``save``; ``HeadLoadError`` names the file, what is wrong and the fix.

        Only tensors and plain containers are read (``weights_only``): a file holding anything
        else is refused, never loaded with ``weights_only=False``, which would run code from it.
        """
        path = pathlib.Path(path)
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise HeadLoadError(path, "it is corrupt or holds objects other than tensors") from None
        except EOFError:
            raise HeadLoadError(path, "it is empty or cut short") from None
        except (RuntimeError, KeyError, ValueError) as exc:  # torch's zip reader: "PytorchStreamReader failed ..."
            raise HeadLoadError(path, f"it is corrupt or not a PyTorch file ({str(exc).split('. ')[0]})") from None
        if not isinstance(blob, dict) or blob.get("format") != HEAD_FORMAT:
            found = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
            raise HeadLoadError(path, f"unknown RLP head format {found!r} (expected {HEAD_FORMAT})")
        try:
            head = cls(HeadConfig(**blob["config"]))
            head.load_state_dict({k: v.float() for k, v in blob["state"].items()})
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            raise HeadLoadError(path, f"its configuration or weights do not fit ({str(exc).splitlines()[0]})") from None
        head.eval()
        return head


class HeadLoadError(ValueError):
    """An RLP head file that cannot be used."""

    def __init__(self, path: pathlib.Path, why: str):
        super().__init__(f"{path} is not a usable RLP head: {why}. Train one with `python -m timebill.rlp train` "
                         "(or restore the file)")
        self.path, self.why = path, why


def targets(lengths: Sequence[int], cfg: HeadConfig) -> torch.Tensor:
    if cfg.kind == "classifier":
        return torch.tensor([class_of(n, cfg.width, cfg.max_tokens) for n in lengths], dtype=torch.long)
    return torch.tensor([min(n, cfg.max_tokens) / cfg.max_tokens for n in lengths], dtype=torch.float32)


def train_head(cfg: HeadConfig, x_train: torch.Tensor, y_train: Sequence[int], x_val: torch.Tensor, y_val: Sequence[int],
               epochs: int = 200, lr: float = 1e-3, weight_decay: float = 1e-2, batch_size: int = 64,
               patience: int = 25, seed: int = 0, progress: bool = False) -> tuple[LengthHead, dict]:
    """Train a head with AdamW; keep the epoch with the lowest validation MAE (early stopping)."""
    torch.manual_seed(seed)
    cfg = copy.deepcopy(cfg)
    cfg.feature_dim = int(x_train.shape[1])
    head = LengthHead(cfg)
    x_train = x_train.float()
    head.mu.copy_(x_train.mean(0))
    head.sigma.copy_(x_train.std(0).clamp_min(1e-4))
    yt = targets(y_train, cfg)
    y_val = np.asarray(y_val)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss() if cfg.kind == "classifier" else nn.MSELoss()
    gen = torch.Generator().manual_seed(seed)
    best, best_state, best_epoch, history = math.inf, None, -1, []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=epochs, unit="epoch", leave=False)
    for epoch in range(epochs):
        head.train()
        perm = torch.randperm(len(yt), generator=gen)
        total = 0.0
        for i in range(0, len(perm), batch_size):
            idx = perm[i:i + batch_size]
            out = head(x_train[idx])
            loss = loss_fn(out, yt[idx]) if cfg.kind == "classifier" else loss_fn(out[:, 0], yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        mae = float(np.mean(np.abs(head.predict_lengths(x_val) - y_val)))
        history.append({"epoch": epoch, "train_loss": total / len(perm), "val_mae": mae})
        if mae < best - 1e-9:
            best, best_state, best_epoch = mae, copy.deepcopy(head.state_dict()), epoch
        if bar is not None:
            bar.update(1)
            bar.set_postfix(val_mae=f"{mae:.1f}", best=f"{best:.1f}")
        if epoch - best_epoch >= patience:
            break
    if bar is not None:
        bar.close()
    head.load_state_dict(best_state)
    head.eval()
    return head, {"best_epoch": best_epoch, "val_mae": best, "epochs_run": len(history)}

"""Modular arithmetic, the grokking transformer, full-batch AdamW and the probes.

The task is c = (a op b) mod p for op in {+, -, *, /} with input tokens [a, b, =]
(token p is '=') and the answer read from the unembedding at the '=' position. The
default model is the one-layer transformer of Nanda et al., "Progress measures for
grokking via mechanistic interpretability" (ICLR 2023): d_model 128, 4 heads of 32,
MLP 512 with ReLU, no LayerNorm, learned positional embeddings, causal attention,
full-batch AdamW (lr 1e-3, betas (0.9, 0.98), weight decay 1.0). `n_layers=2` gives the
two-layer model of Power et al., "Grokking: generalization beyond overfitting on small
algorithmic datasets" (2022).

Attention runs through `physattn.attention.dot_product_attention` at T = sqrt(H), so
the probed `Thermo` comes from the same computation as the forward pass. Only the '='
query can reach the unembedding of the last layer, so the last layer is evaluated for
that query alone (exact, and 3x cheaper); earlier layers see all positions.

Letters: B examples, T positions (3), Q query positions (T, or 1 in the last layer),
S key positions (T), D d_model, N heads, H head size (D / N), M MLP width, V vocab
(p + 1), P classes (p).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from physattn import attention, thermo

OPS = ("+", "-", "*", "/")
IMPLEMENTATIONS = ("reference", "chunked")
QUANTITIES = (
    "heat_capacity",
    "quenched_heat_capacity",
    "entropy",
    "free_energy",
    "energy",
    "logit_scale",
)
SEQ_LEN = 3


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, int(n**0.5) + 1))


@dataclasses.dataclass(frozen=True)
class Config:
    """One grokking run: task, model, optimiser, budget and probe cadence.

    `steps` is an upper bound: with `stop_factor` > 0 a run stops once the logged
    step reaches stop_factor x (first step with test accuracy >= 0.95) (and at least
    `log_every` x `min_points_after` steps after it), which keeps the post-onset
    curve but not hours of it. `smooth` is the odd moving-average window (in logged
    points) used for peak detection. `out_dir` None writes nothing.
    """

    p: int = 23
    op: str = "+"
    train_fraction: float = 0.5
    n_layers: int = 1
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.98
    weight_decay: float = 1.0
    warmup_steps: int = 10
    steps: int = 20_000
    log_every: int = 100
    stop_factor: float = 1.5
    min_points_after: int = 10
    smooth: int = 5
    seed: int = 0
    implementation: str = "reference"
    out_dir: str | None = None

    def __post_init__(self):
        def bad(field: str, allowed: str):
            value = getattr(self, field)
            raise ValueError(f"Config.{field} must be {allowed}, got {value!r}")

        def is_int(v) -> bool:
            return isinstance(v, int | np.integer) and not isinstance(v, bool)

        def is_num(v) -> bool:
            return isinstance(v, int | float | np.number) and not isinstance(v, bool)

        if not is_int(self.p) or not _is_prime(int(self.p)) or self.p < 3:
            bad("p", "a prime >= 3 (e.g. 23, 59, 113)")
        if self.op not in OPS:
            bad("op", f"one of {OPS}")
        f = self.train_fraction
        if not is_num(f) or not 0.0 < f < 1.0:
            bad("train_fraction", "a number in (0, 1), e.g. 0.3 or 0.5")
        n = self.p * (self.p - 1 if self.op == "/" else self.p)
        n_train = int(round(f * n))
        if not 1 <= n_train < n:
            bad("train_fraction", f"leaving >= 1 train and test example of {n}")
        for field in ("n_layers", "d_model", "n_heads", "d_mlp", "steps", "log_every"):
            if not is_int(getattr(self, field)) or getattr(self, field) < 1:
                bad(field, "a positive int")
        for field in ("warmup_steps", "min_points_after", "seed"):
            if not is_int(getattr(self, field)) or getattr(self, field) < 0:
                bad(field, "an int >= 0")
        if self.d_model % self.n_heads:
            bad("d_model", f"a multiple of n_heads={self.n_heads}")
        if self.steps < self.log_every:
            bad("steps", f"at least log_every={self.log_every}")
        if not is_num(self.lr) or not 0.0 < self.lr < 1.0:
            bad("lr", "a learning rate in (0, 1)")
        for field in ("beta1", "beta2"):
            if not is_num(getattr(self, field)) or not 0.0 <= getattr(self, field) < 1:
                bad(field, "in [0, 1)")
        if not is_num(self.weight_decay) or self.weight_decay < 0:
            bad("weight_decay", "a number >= 0")
        if not is_num(self.stop_factor) or not (
            self.stop_factor == 0 or self.stop_factor >= 1
        ):
            bad("stop_factor", "0 (never stop early) or >= 1")
        if not is_int(self.smooth) or self.smooth < 1 or self.smooth % 2 == 0:
            bad("smooth", "an odd positive int (moving-average window, points)")
        if self.implementation not in IMPLEMENTATIONS:
            bad("implementation", f"one of {IMPLEMENTATIONS}")
        if self.out_dir is not None and not isinstance(self.out_dir, str):
            bad("out_dir", "None or a folder path (str)")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def temperature(self) -> float:
        """Attention temperature T = sqrt(H) [score units] (Vaswani et al. 2017)."""
        return float(self.head_dim) ** 0.5

    @property
    def name(self) -> str:
        """File stem naming the run: task, width, depth, seed."""
        ops = {"+": "add", "-": "sub", "*": "mul", "/": "div"}
        return (
            f"grok_p{self.p}_{ops[self.op]}_f{self.train_fraction:g}_"
            f"d{self.d_model}_L{self.n_layers}_s{self.seed}"
        )


class Data(NamedTuple):
    """Train/test split; tokens (B, T) int32 [a, b, p], labels (B,) int32."""

    x_train: jax.Array
    y_train: jax.Array
    x_test: jax.Array
    y_test: jax.Array


def make_data(cfg: Config) -> Data:
    """All pairs (a, b) (b != 0 for '/'), split at random from seed `cfg.seed`."""
    p = cfg.p
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    a, b = a.ravel(), b.ravel()
    if cfg.op == "/":
        keep = b != 0
        a, b = a[keep], b[keep]
        c = a * np.array([pow(int(v), p - 2, p) for v in b]) % p
    else:
        c = {"+": a + b, "-": a - b, "*": a * b}[cfg.op] % p
    x = np.stack([a, b, np.full_like(a, p)], axis=1).astype(np.int32)
    n = len(c)
    key = jax.random.fold_in(jax.random.key(cfg.seed), 1)
    perm = np.asarray(jax.random.permutation(key, n))
    n_train = int(round(cfg.train_fraction * n))
    tr, te = perm[:n_train], perm[n_train:]
    y = c.astype(np.int32)
    return Data(*(jnp.asarray(v) for v in (x[tr], y[tr], x[te], y[te])))


def init_params(cfg: Config, key: jax.Array) -> dict[str, Any]:
    """float32 parameters; weights N(0, 1/fan_in), biases 0 (Nanda et al. 2023)."""
    D, N, H, M, V, P = (
        cfg.d_model,
        cfg.n_heads,
        cfg.head_dim,
        cfg.d_mlp,
        cfg.p + 1,
        cfg.p,
    )
    f32 = jnp.float32
    normal = lambda k, shape, fan_in: (
        jax.random.normal(k, shape, f32) / np.float32(np.sqrt(fan_in))
    )
    k_e, k_pos, k_u, *k_layers = jax.random.split(key, 3 + cfg.n_layers)
    layers = []
    for kl in k_layers:
        kq, kk, kv, ko, ki, km = jax.random.split(kl, 6)
        layers.append(
            {
                "w_q_DxNxH": normal(kq, (D, N, H), D),
                "w_k_DxNxH": normal(kk, (D, N, H), D),
                "w_v_DxNxH": normal(kv, (D, N, H), D),
                "w_o_NxHxD": normal(ko, (N, H, D), N * H),
                "w_in_DxM": normal(ki, (D, M), D),
                "b_in_M": jnp.zeros((M,), f32),
                "w_out_MxD": normal(km, (M, D), M),
                "b_out_D": jnp.zeros((D,), f32),
            }
        )
    return {
        "embed_VxD": normal(k_e, (V, D), D),
        "pos_TxD": normal(k_pos, (SEQ_LEN, D), D),
        "unembed_DxP": normal(k_u, (D, P), D),
        "layers": layers,
    }


class LayerStats(NamedTuple):
    """Attention of the '=' query in one layer: Thermo (B, N), scores (B, N, S)."""

    thermo: thermo.Thermo
    scores_BxNxS: jax.Array


def attend(q_BxQxNxH, k_BxSxNxH, v_BxSxNxH, *, causal: bool, cfg: Config):
    """The one attention call of the model: (out (B,Q,N,H), Thermo (B,Q,N))."""
    return attention.dot_product_attention(
        q_BxQxNxH,
        k_BxSxNxH,
        v_BxSxNxH,
        is_causal=causal,
        temperature=cfg.temperature,
        implementation=cfg.implementation,
        return_stats=True,
    )


def forward(params, x_BxT, cfg: Config, *, probe: bool = False):
    """Logits (B, P) at '='; with probe, also one `LayerStats` per layer."""
    e = params["embed_VxD"]
    x_BxTxD = jnp.take(e, x_BxT, axis=0) + params["pos_TxD"][None]
    stats = []
    for i, lp in enumerate(params["layers"]):
        last = i == cfg.n_layers - 1
        xq_BxQxD = x_BxTxD[:, -1:] if last else x_BxTxD
        q_BxQxNxH = jnp.einsum("bqd,dnh->bqnh", xq_BxQxD, lp["w_q_DxNxH"])
        k_BxSxNxH = jnp.einsum("bsd,dnh->bsnh", x_BxTxD, lp["w_k_DxNxH"])
        v_BxSxNxH = jnp.einsum("bsd,dnh->bsnh", x_BxTxD, lp["w_v_DxNxH"])
        # The last layer's single '=' query sees every key: no causal mask there.
        z_BxQxNxH, th = attend(
            q_BxQxNxH, k_BxSxNxH, v_BxSxNxH, causal=not last, cfg=cfg
        )
        if probe:
            s_BxNxS = jnp.einsum("bnh,bsnh->bns", q_BxQxNxH[:, -1], k_BxSxNxH)
            stats.append(LayerStats(jax.tree.map(lambda a: a[:, -1], th), s_BxNxS))
        h_BxQxD = xq_BxQxD + jnp.einsum("bqnh,nhd->bqd", z_BxQxNxH, lp["w_o_NxHxD"])
        m_BxQxM = jax.nn.relu(h_BxQxD @ lp["w_in_DxM"] + lp["b_in_M"][None, None])
        x_BxTxD = h_BxQxD + m_BxQxM @ lp["w_out_MxD"] + lp["b_out_D"][None, None]
    logits_BxP = x_BxTxD[:, -1] @ params["unembed_DxP"]
    return (logits_BxP, stats) if probe else logits_BxP


def _loss_acc(logits_BxP, y_B):
    logp_BxP = jax.nn.log_softmax(logits_BxP.astype(jnp.float32), axis=-1)
    nll_B = -jnp.take_along_axis(logp_BxP, y_B[:, None], axis=-1)[:, 0]
    acc = jnp.mean(
        (jnp.argmax(logits_BxP, axis=-1).astype(y_B.dtype) == y_B).astype(jnp.float32)
    )
    return jnp.mean(nll_B), acc


def make_optimizer(cfg: Config) -> optax.GradientTransformation:
    """AdamW with a linear warm-up over `warmup_steps` (Nanda et al. 2023)."""
    lr = (
        optax.linear_schedule(0.0, cfg.lr, cfg.warmup_steps)
        if cfg.warmup_steps
        else cfg.lr
    )
    return optax.adamw(lr, b1=cfg.beta1, b2=cfg.beta2, weight_decay=cfg.weight_decay)


class TrainState(NamedTuple):
    params: Any
    opt_state: Any


def init_state(cfg: Config) -> TrainState:
    params = init_params(cfg, jax.random.fold_in(jax.random.key(cfg.seed), 0))
    # optax's schedules and bias correction mix int32 step counts with python
    # floats, which strict dtype promotion (used by the tests) refuses; harmless.
    with jax.numpy_dtype_promotion("standard"):
        return TrainState(params, make_optimizer(cfg).init(params))


def static_config(cfg: Config) -> Config:
    """`cfg` with the fields that do not change the compiled computation (seed,
    budget, stopping, smoothing, out_dir) set to fixed values: the jit cache key, so
    that seeds and sweeps reuse one compilation."""
    return dataclasses.replace(
        cfg,
        seed=0,
        steps=cfg.log_every,
        stop_factor=0.0,
        min_points_after=0,
        smooth=1,
        out_dir=None,
    )


def train_chunk(state: TrainState, data: Data, cfg: Config, n_steps: int):
    """`n_steps` full-batch AdamW steps in one jitted `lax.scan`: (state, losses)."""
    return _train_chunk(state, data, static_config(cfg), n_steps)


@functools.partial(jax.jit, static_argnames=("cfg", "n_steps"))
def _train_chunk(state: TrainState, data: Data, cfg: Config, n_steps: int):
    opt = make_optimizer(cfg)

    def loss_fn(params):
        return _loss_acc(forward(params, data.x_train, cfg), data.y_train)[0]

    def step(st: TrainState, _):
        loss, grads = jax.value_and_grad(loss_fn)(st.params)
        # Strict promotion refuses optax's `float ** int32`; see `init_state`.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = opt.update(grads, st.opt_state, st.params)
            params = optax.apply_updates(st.params, updates)
        return TrainState(params, opt_state), loss

    return jax.lax.scan(step, state, None, length=n_steps)


def _thermo_summary(th: thermo.Thermo, s_RxK, temperature: float):
    """Probe values over rows R (leading axis) for each trailing unit.

    C = mean_R Var_p(E)/T^2; C_q = Var_R(U)/T^2; S, F, U = mean_R; logit scale =
    mean_R std_keys(s)/T. Shapes: th fields (R, ...), s (R, ..., K) -> (...).
    """
    t = jnp.asarray(temperature, th.energy.dtype)
    return {
        "heat_capacity": jnp.mean(th.heat_capacity, axis=0),
        "quenched_heat_capacity": thermo.quenched_heat_capacity(
            th.energy, temperature, axis=0
        ),
        "entropy": jnp.mean(th.entropy, axis=0),
        "free_energy": jnp.mean(th.free_energy, axis=0),
        "energy": jnp.mean(th.energy, axis=0),
        "logit_scale": jnp.mean(jnp.std(s_RxK.astype(th.energy.dtype), axis=-1), axis=0)
        / t,
    }


def _split_probe(params, x_BxT, y_B, cfg: Config) -> dict[str, jax.Array]:
    logits_BxP, stats = forward(params, x_BxT, cfg, probe=True)
    loss, acc = _loss_acc(logits_BxP, y_B)
    out = {"loss": loss, "acc": acc}
    for i, st in enumerate(stats):
        for name, v_N in _thermo_summary(
            st.thermo, st.scores_BxNxS, cfg.temperature
        ).items():
            out[f"attn{i}.{name}"] = v_N
    th_out = thermo.observables(logits_BxP.astype(jnp.float32), 1.0)
    for name, v in _thermo_summary(th_out, logits_BxP, 1.0).items():
        out[f"out.{name}"] = v
    return out


def probe(params, data: Data, cfg: Config) -> dict[str, jax.Array]:
    """All probes on train and test (jitted): keys 'train.loss', 'test.acc',
    'test.attn0.entropy' (N,), 'test.out.heat_capacity' (scalar, logits at T = 1),
    ..., and 'weight_norm'."""
    return _probe(params, data, static_config(cfg))


@functools.partial(jax.jit, static_argnames=("cfg",))
def _probe(params, data: Data, cfg: Config) -> dict[str, jax.Array]:
    out = {}
    for split, x, y in (
        ("train", data.x_train, data.y_train),
        ("test", data.x_test, data.y_test),
    ):
        for k, v in _split_probe(params, x, y, cfg).items():
            out[f"{split}.{k}"] = v
    sq = sum(jnp.sum(jnp.square(a)) for a in jax.tree.leaves(params))
    out["weight_norm"] = jnp.sqrt(sq)
    return out


def n_params(cfg: Config) -> int:
    """Number of trainable parameters."""
    shapes = jax.eval_shape(lambda: init_params(cfg, jax.random.key(0)))
    return int(sum(np.prod(a.shape) for a in jax.tree.leaves(shapes)))

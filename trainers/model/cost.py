"""Analytic cost model of a `NetworkSpec`: parameters, MACs and training activation memory.

Nothing is built and no tensor is allocated, so it is cheap enough to call on every candidate of
a search. ``params`` is exact (it equals ``sum(p.numel() for p in build_model(spec).parameters())``);
``macs`` is the exact convolution + linear multiply-accumulate count of one forward pass;
``activation_bytes`` is an *estimate* of the memory autograd keeps for backward.

Conventions
-----------
MACs (per image, forward only)
    A convolution costs ``out_elements * in_channels / groups * kh * kw``, a linear layer
    ``in_features * out_features``. BatchNorm, ReLU, pooling, additions, concatenations and the
    global mean are counted as 0 MACs. GUNN and SUNN of the same spec do the same convolutions, so
    they have identical MACs (in any GUNN mode); the extra forward that GUNN ``recompute`` mode
    runs inside backward is not a forward MAC and is not counted.

Activation bytes (per image, float32, training mode)
    The bytes of the distinct tensors (each storage once) whose size grows with the batch and that
    autograd keeps from forward to backward, as PyTorch's CPU kernels save them:

    - a convolution / linear layer saves its input;
    - BatchNorm (training) saves its input (the per-channel statistics are per batch, not per
      image, and are ignored, as are parameters and buffers);
    - ReLU saves its output (in-place ReLU: the BatchNorm output it overwrote), so
      ``conv -> BN -> ReLU`` keeps the conv output and the ReLU output;
    - max pooling saves its input and its int64 indices (8 bytes each); average pooling saves
      its input (already kept by the ReLU before it); add, cat, slicing and the global mean save
      nothing;
    - the image itself is kept by the first convolution and is counted.

    Per GUNN/SUNN layer with ``w = K*n`` (channels per pixel; see `layer_cost`), not counting the
    layer input, which is counted once where it is produced:

    - ``sunn`` (grouped or per-unit): every unit keeps ``4w + n`` (conv1 out, ReLU1 out, conv2 out,
      ReLU2 out, conv3 out), the projection ``n`` (its conv output), each unit after the first
      also its ``n``-channel input: ``P * (4w + n + [n] + (M-1)(4w + 2n))``;
    - ``naive`` GUNN: SUNN's plus the fresh N-channel state each segment after the first reads,
      ``(P-1) * N`` more;
    - ``keep`` GUNN (Algorithm 1): SUNN's, plus the layer output ``y`` that the custom Function
      saves to rebuild the states;
    - ``recompute`` GUNN (Algorithm 1): the layer output ``y`` only (the input and output are all
      the Function keeps).

    A layer's output is counted once in the network even when the next convolution also saves it.
    This is a model of the saved tensors, not of the allocator: the peak of a training step also
    holds gradients, the transient activations of the segment that ``recompute`` mode rebuilds in
    backward, and allocator slack, so measure peak memory (``benchmarks/layer_memory.py``) where it
    matters. For these cases it matches the unique-storage count of
    ``torch.autograd.graph.saved_tensors_hooks`` on CPU exactly (``tests/test_cost.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from trainers.model.spec import GUNN_MODES, NetworkSpec, check_shape, model_spec

FLOAT_BYTES = 4  # float32
INDEX_BYTES = 8  # int64 max-pool indices
LAYER_MODES = ("sunn", *GUNN_MODES)


@dataclass(frozen=True)
class Cost:
    """Costs of a network or a layer; every field per image except ``params``."""

    params: int  # exact number of trainable parameters
    macs: int  # multiply-accumulates of one forward pass (convs + fc; BN/ReLU/pool/add are 0)
    activation_bytes: int  # estimated bytes saved for backward in training (float32)

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.params + other.params, self.macs + other.macs,
                    self.activation_bytes + other.activation_bytes)


def conv_out(size: int, k: int, stride: int = 1, padding: int = 0) -> int:
    """Spatial output size of a convolution or pooling window (floor mode)."""
    return (size + 2 * padding - k) // stride + 1


def layer_cost(N: int, P: int, K: int, M: int, projection: bool, hw: int,
               mode: str = "recompute") -> Cost:
    """Cost of one GUNN/SUNN layer <N, P, K, M> at spatial size ``hw x hw``.

    ``mode`` is a GUNN mode (``recompute``, ``keep``, ``naive``) or ``sunn``; it changes only
    ``activation_bytes``, which counts what the layer saves for backward *excluding its input*
    (which its producer accounts for) and *including its output* where the layer itself saves it
    (GUNN ``recompute`` and ``keep`` modes). See the module docstring for the accounting.
    """
    check_shape(N, P)
    if min(N, P, K, M, hw) < 1:
        raise ValueError(f"N, P, K, M, hw must be positive, got {(N, P, K, M, hw)}")
    if mode not in LAYER_MODES:
        raise ValueError(f"mode must be one of {LAYER_MODES}, got {mode!r}")
    n = N // P
    w = K * n
    area = hw * hw

    def unit_params(cin: int) -> int:
        return cin * w + 2 * w + 9 * w * w + 2 * w + w * n + 2 * n

    def unit_macs(cin: int) -> int:
        return area * (cin * w + 9 * w * w + w * n)

    seg_params = unit_params(N) + (M - 1) * unit_params(n)
    seg_macs = unit_macs(N) + (M - 1) * unit_macs(n)
    if projection:
        seg_params += N * n + 2 * n
        seg_macs += area * N * n

    # Channels per pixel kept for backward by one segment's modules (module docstring).
    seg_saved = (4 * w + n) + (n if projection else 0) + (M - 1) * (4 * w + 2 * n)
    if mode == "recompute":
        saved = N
    elif mode == "keep":
        saved = P * seg_saved + N
    elif mode == "naive":
        saved = P * seg_saved + (P - 1) * N
    else:
        saved = P * seg_saved
    return Cost(params=P * seg_params, macs=P * seg_macs,
                activation_bytes=saved * area * FLOAT_BYTES)


def layer_saves_output(mode: str) -> bool:
    """Whether the layer in ``mode`` itself keeps its output for backward."""
    return mode in ("recompute", "keep")


def estimate(spec: NetworkSpec | dict | str, image_size: int = 32,
             gunn_mode: str = "recompute") -> Cost:
    """Cost of the network ``build_model(spec, gunn_mode=gunn_mode)`` on ``image_size`` images.

    Use ``image_size=32`` for CIFAR models and 224 for ImageNet models. The CIFAR stem keeps the
    resolution, the ImageNet stem (7x7/2 conv, 3x3/2 max pool) divides it by 4 and every
    transition halves it: after its 1x1 conv (``spec.transition`` conv_pool) or before it
    (pool_conv, the conv at a quarter of the pixels). ``gunn_mode`` applies to ``family="gunn"``; SUNN networks use the
    ``sunn`` accounting whatever it is. ``params`` is exact, ``macs`` exact under the module's
    conventions, ``activation_bytes`` an estimate (module docstring).
    """
    if isinstance(spec, str):
        spec = model_spec(spec)
    elif isinstance(spec, dict):
        spec = NetworkSpec.from_dict(spec)
    if gunn_mode not in GUNN_MODES:
        raise ValueError(f"gunn_mode must be one of {GUNN_MODES}, got {gunn_mode!r}")
    mode = gunn_mode if spec.family == "gunn" else "sunn"

    params = macs = 0
    saved_floats = 0  # float32 elements per image kept for backward
    saved_bytes = 0  # other dtypes (max-pool indices)
    hw = image_size
    cin, c, first = spec.in_channels, spec.stem_channels, spec.stages[0].N

    # Stem. Every conv_bn_relu keeps its conv output (BN input) and its ReLU output.
    saved_floats += cin * hw * hw  # the image, kept by the first conv
    if spec.stem == "cifar":
        params += cin * c * 9 + 2 * c
        macs += hw * hw * c * cin * 9
        saved_floats += 2 * c * hw * hw
    else:
        h1 = conv_out(hw, 7, 2, 3)
        params += cin * c * 49 + 2 * c
        macs += h1 * h1 * c * cin * 49
        saved_floats += 2 * c * h1 * h1  # conv out, ReLU out (= max-pool input)
        hw = conv_out(h1, 3, 2, 1)
        saved_floats += c * hw * hw  # max-pool output (input of the 1x1 conv)
        saved_bytes += INDEX_BYTES * c * hw * hw
    params += c * first + 2 * first
    macs += hw * hw * first * c
    saved_floats += 2 * first * hw * hw  # its ReLU output is the first layer's input

    out_counted = False  # whether the previous layer's output is already counted
    prev = None
    for i, s in enumerate(spec.stages):
        if i > 0 and spec.transition == "conv_pool":
            # conv1x1 prev -> N, BN, ReLU, avgpool 2: the conv keeps the layer output, BN its
            # input, ReLU its output (also the pool's input); the pool output is the next
            # layer's input, kept by that layer.
            params += prev * s.N + 2 * s.N
            macs += hw * hw * s.N * prev
            if not out_counted:
                saved_floats += prev * hw * hw
            saved_floats += 2 * s.N * hw * hw
            hw //= 2
            saved_floats += s.N * hw * hw
        elif i > 0:
            # avgpool 2, conv1x1 prev -> N, BN, ReLU: the pool keeps the layer output, the conv
            # the pooled prev channels, BN its input, ReLU its output (the next layer's input).
            if not out_counted:
                saved_floats += prev * hw * hw
            hw //= 2
            params += prev * s.N + 2 * s.N
            macs += hw * hw * s.N * prev
            saved_floats += (prev + 2 * s.N) * hw * hw
        lc = layer_cost(s.N, s.P, s.K, s.M, spec.projection, hw, mode)
        params += lc.params
        macs += lc.macs
        saved_bytes += lc.activation_bytes
        out_counted = layer_saves_output(mode)
        prev = s.N

    last = prev
    if spec.head_channels:
        h = spec.head_channels
        params += last * h + 2 * h
        macs += hw * hw * h * last
        if not out_counted:
            saved_floats += last * hw * hw
        saved_floats += 2 * h * hw * hw
        last = h
    # Global mean (saves nothing), then fc, which keeps its `last`-sized input.
    params += last * spec.num_classes + spec.num_classes
    macs += last * spec.num_classes
    saved_floats += last
    return Cost(params=params, macs=macs,
                activation_bytes=saved_floats * FLOAT_BYTES + saved_bytes)

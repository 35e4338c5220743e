"""PyTorch's half of the side-by-side benchmark (examples/bench_side_by_side.rs is quarc's half).

Identical workloads: the same shapes, the same LSQ formula and gradient scale (1/sqrt(N*Qp), N = elements per
sample for activations, per tensor for weights), the same models (SmallCnn, CIFAR ResNet-18, first conv and last
fc in full precision), the same loss (KL(teacher || student), T = 1, against fixed teacher logits) and optimiser
(SGD, momentum 0.9, weight decay 5e-4 on conv/linear weights, activation-quantizer steps at lr/10), 2 threads.
One JSON line per workload is appended to --out. Run through bench/run.sh, with bench/.venv (bench/setup_venv.sh).

Sides: "torch" is PyTorch eager with LSQ composed from autograd ops, as the QuaRC/ACS research code writes it;
"torch-handwritten" (fake-quant only) is a torch.autograd.Function with a hand-written backward.
"""

import argparse
import json
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

DEV = torch.device("cpu")  # set by --device; every tensor and model of a workload lives there


def sync():
    if DEV.type == "cuda":
        torch.cuda.synchronize()

# ---------------------------------------------------------------------------------------------- recording


class Recorder:
    def __init__(self, out, reps, filt, label=""):
        self.out, self.reps, self.filter, self.label = out, reps, filt, label

    def wants(self, name):
        return self.filter is None or self.filter in name

    def measure(self, name, unit, work, fn, side="torch"):
        if not self.wants(name):
            return
        fn()
        sync()
        runs = []
        for _ in range(self.reps):
            t0 = time.perf_counter()
            fn()
            sync()
            runs.append(time.perf_counter() - t0)
        median = sorted(runs)[len(runs) // 2]
        side += self.label
        value, higher = (work / median, True) if work > 0 else (median * 1e3, False)
        print(f"{side:<18} {name:<44} {value:>10.2f} {unit}", flush=True)
        self.write(dict(side=side, device=DEV.type, workload=name, unit=unit, value=round(value, 4), higher_is_better=higher,
                        median_s=round(median, 6), runs_s=[round(r, 5) for r in runs]))

    def write(self, record):
        with open(self.out, "a") as f:
            f.write(json.dumps(record) + "\n")


def seeded(seed, shape, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return ((torch.rand(shape, generator=g) * 2 - 1) * scale).to(DEV)


# ---------------------------------------------------------------------------------------------- LSQ


def grad_scale(x, g):
    return (x - x * g).detach() + x * g


def round_pass(x):
    return (x.round() - x).detach() + x


def lsq_composed(x, step, qn, qp, g, per_channel):
    s = grad_scale(step, g)
    if per_channel:
        s = s.view(-1, *([1] * (x.dim() - 1)))
    return round_pass(torch.clamp(x / s, qn, qp)) * s


class LsqFunction(torch.autograd.Function):
    """LSQ with a hand-written backward: one pass forward, one pass backward."""

    @staticmethod
    def forward(ctx, x, step, qn, qp, g, per_channel):
        s = step.view(-1, *([1] * (x.dim() - 1))) if per_channel else step
        v = x / s
        vc = torch.clamp(v, qn, qp)
        r = vc.round()
        ctx.save_for_backward(v, r, step)
        ctx.cfg = (qn, qp, g, per_channel)
        return r * s

    @staticmethod
    def backward(ctx, grad):
        v, r, step = ctx.saved_tensors
        qn, qp, g, per_channel = ctx.cfg
        inside = (v >= qn) & (v <= qp)
        gx = grad * inside
        ds = torch.where(inside, r - v, r)  # r is qn / qp outside
        prod = grad * ds
        gs = (prod.sum(dim=tuple(range(1, v.dim()))) if per_channel else prod.sum().reshape(step.shape)) * g
        return gx, gs, None, None, None, None


def lsq_handwritten(x, step, qn, qp, g, per_channel):
    return LsqFunction.apply(x, step, qn, qp, g, per_channel)


class Lsq(nn.Module):
    """Per-tensor LSQ quantizer; activations unsigned (post-ReLU), weights signed."""

    def __init__(self, bits, signed, weight):
        super().__init__()
        self.qn, self.qp = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
        self.weight = weight
        self.step = nn.Parameter(torch.tensor(1.0))

    def calibrate(self, x):
        self.step.data.fill_(2 * x.abs().mean().item() / math.sqrt(self.qp))

    def forward(self, x):
        n = x.numel() if self.weight else x[0].numel()
        return lsq_composed(x, self.step, self.qn, self.qp, 1.0 / math.sqrt(n * self.qp), False)


class QConv2d(nn.Conv2d):
    def __init__(self, cin, cout, k, stride, padding, qbits, groups=1, signed_input=False):
        super().__init__(cin, cout, k, stride=stride, padding=padding, groups=groups, bias=False)
        self.wq = Lsq(qbits[0], True, True) if qbits else None
        self.aq = Lsq(qbits[1], signed_input, False) if qbits else None

    def calibrate(self, x):
        if self.wq is not None:
            self.wq.calibrate(self.weight)
            self.aq.calibrate(x)

    def forward(self, x):
        if self.wq is None:
            return super().forward(x)
        return self._conv_forward(self.aq(x), self.wq(self.weight), None)


def calibrate(model, x):
    """Initialises every quantizer from its own input, like quarc's Model::calibrate."""
    hooks = [m.register_forward_pre_hook(lambda mod, inp: mod.calibrate(inp[0]))
             for m in model.modules() if isinstance(m, QConv2d)]
    with torch.no_grad():
        model.train()
        model(x)
    for h in hooks:
        h.remove()


# ---------------------------------------------------------------------------------------------- models


class SmallCnn(nn.Module):
    def __init__(self, q, classes=10):
        super().__init__()
        self.conv1, self.bn1 = QConv2d(1, 32, 3, 1, 1, None), nn.BatchNorm2d(32)
        self.conv2, self.bn2 = QConv2d(32, 64, 3, 2, 1, q), nn.BatchNorm2d(64)
        self.conv3, self.bn3 = QConv2d(64, 128, 3, 2, 1, q), nn.BatchNorm2d(128)
        self.fc = nn.Linear(128, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        return self.fc(x.mean((2, 3)))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride, q):
        super().__init__()
        self.conv1, self.bn1 = QConv2d(cin, cout, 3, stride, 1, q), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = QConv2d(cout, cout, 3, 1, 1, q), nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(QConv2d(cin, cout, 1, stride, 0, q), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.short is None else self.short(x)))


class ResNet18(nn.Module):
    def __init__(self, q, classes=10):
        super().__init__()
        self.conv1, self.bn1 = QConv2d(3, 64, 3, 1, 1, None), nn.BatchNorm2d(64)
        blocks, cin = [], 64
        for cout, stride in [(64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1)]:
            blocks.append(BasicBlock(cin, cout, stride, q))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        return self.fc(self.blocks(x).mean((2, 3)))


def make_divisible(v, d=8):
    new = max(int(v + d / 2) // d * d, d)
    return new + d if new < 0.9 * v else new


class InvertedResidual(nn.Module):
    """quarc's block: 1×1 expand (unless t = 1), 3×3 depthwise, 1×1 linear projection; inputs after a
    projection get signed activation codes."""

    def __init__(self, cin, cout, stride, t, q, signed_in):
        super().__init__()
        hidden = cin * t
        self.expand = None
        if t != 1:
            self.expand = nn.Sequential(QConv2d(cin, hidden, 1, 1, 0, q, signed_input=signed_in),
                                        nn.BatchNorm2d(hidden), nn.ReLU6())
        self.dw = nn.Sequential(QConv2d(hidden, hidden, 3, stride, 1, q, groups=hidden,
                                        signed_input=t == 1 and signed_in), nn.BatchNorm2d(hidden), nn.ReLU6())
        self.project = nn.Sequential(QConv2d(hidden, cout, 1, 1, 0, q), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        h = x if self.expand is None else self.expand(x)
        h = self.project(self.dw(h))
        return h + x if self.residual else h


class MobileNetV2(nn.Module):
    """CIFAR MobileNetV2, width 1 (stem stride 1, second stage stride 1), as quarc's: stem, head 1×1 and fc in FP."""

    def __init__(self, q, classes=10):
        super().__init__()
        cin = make_divisible(32)
        self.stem = nn.Sequential(QConv2d(3, cin, 3, 1, 1, None), nn.BatchNorm2d(cin), nn.ReLU6())
        blocks = []
        for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                           (6, 160, 3, 2), (6, 320, 1, 1)]:
            for k in range(n):
                blocks.append(InvertedResidual(cin, make_divisible(c), s if k == 0 else 1, t, q, len(blocks) > 0))
                cin = make_divisible(c)
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(QConv2d(cin, 1280, 1, 1, 0, None), nn.BatchNorm2d(1280), nn.ReLU6())
        self.fc = nn.Linear(1280, classes)

    def forward(self, x):
        return self.fc(self.head(self.blocks(self.stem(x))).mean((2, 3)))


QUANT = {"fp32": None, "w4a4": (4, 4), "w2a2": (2, 2)}


def build(model, quant):
    q = QUANT[quant]
    return {"smallcnn": SmallCnn, "resnet18": ResNet18, "mobilenetv2": MobileNetV2}[model](q).to(DEV)


def input_shape(model, batch):
    return (batch, 1, 28, 28) if model == "smallcnn" else (batch, 3, 32, 32)


def kd(teacher, logits):
    return F.kl_div(F.log_softmax(logits, 1), F.log_softmax(teacher, 1), reduction="batchmean", log_target=True)


def train_step_runner(model, quant, batch):
    m = build(model, quant)
    x = seeded(3, input_shape(model, batch))
    teacher = seeded(4, (batch, 10), 2.0)
    calibrate(m, x)
    decayed, plain, act_q = [], [], []
    for name, p in m.named_parameters():
        if ".aq." in name:
            act_q.append(p)
        elif name.endswith("weight") and p.dim() >= 2:
            decayed.append(p)
        else:
            plain.append(p)
    opt = torch.optim.SGD([dict(params=decayed, weight_decay=5e-4), dict(params=plain, weight_decay=0.0),
                           dict(params=act_q, weight_decay=0.0, lr=0.001)], lr=0.01, momentum=0.9)
    m.train()

    def run():
        opt.zero_grad(set_to_none=True)
        loss = kd(teacher, m(x))
        loss.backward()
        opt.step()

    return run


# ---------------------------------------------------------------------------------------------- groups

CONV_LAYERS = [  # name, batch, c_in, c_out, hw, k, stride, groups, input gradient needed (same list as the Rust side)
    ("r18-64x64@32-s1", 64, 64, 64, 32, 3, 1, 1, True),
    ("r18-128x128@16-s1", 64, 128, 128, 16, 3, 1, 1, True),
    ("r18-256x256@8-s1", 64, 256, 256, 8, 3, 1, 1, True),
    ("r18-512x512@4-s1", 64, 512, 512, 4, 3, 1, 1, True),
    ("r18-64x128@32-s2", 64, 64, 128, 32, 3, 2, 1, True),
    ("r18-128x256@16-s2", 64, 128, 256, 16, 3, 2, 1, True),
    ("r18-1x1-64x128@32-s2", 64, 64, 128, 32, 1, 2, 1, True),
    ("r18-1x1-128x256@16-s2", 64, 128, 256, 16, 1, 2, 1, True),
    ("r18-1x1-256x512@8-s2", 64, 256, 512, 8, 1, 2, 1, True),
    ("smallcnn-1x32@28-s1", 128, 1, 32, 28, 3, 1, 1, False),
    ("smallcnn-32x64@28-s2", 128, 32, 64, 28, 3, 2, 1, True),
    ("smallcnn-64x128@14-s2", 128, 64, 128, 14, 3, 2, 1, True),
    ("mbv2-pw-16x96@32", 64, 16, 96, 32, 1, 1, 1, True),
    ("mbv2-dw-96@32-s2", 64, 96, 96, 32, 3, 2, 96, True),
    ("mbv2-pw-96x16@16", 64, 96, 16, 16, 1, 1, 1, True),
    ("mbv2-dw-192@8-s1", 64, 192, 192, 8, 3, 1, 192, True),
]


def gemm(rec):
    a, b = seeded(1, (2048, 2048)), seeded(2, (2048, 2048))
    rec.measure("gemm/2048", "GFLOP/s", 2 * 2048 ** 3 / 1e9, lambda: torch.mm(a, b))


def conv(rec):
    conv_bwd = torch.ops.aten.convolution_backward
    for i, (name, batch, cin, cout, hw, k, stride, groups, needs_dx) in enumerate(CONV_LAYERS):
        pad = k // 2
        x = seeded(10 + i, (batch, cin, hw, hw))
        w = seeded(100 + i, (cout, cin // groups, k, k), 0.1)
        with torch.no_grad():
            y = F.conv2d(x, w, stride=stride, padding=pad, groups=groups)
        dy = seeded(200 + i, tuple(y.shape))
        gflop = 2 * y.numel() * cin // groups * k * k / 1e9

        def bwd(mask):
            return lambda: conv_bwd(dy, x, w, None, [stride, stride], [pad, pad], [1, 1], False, [0, 0], groups, mask)

        with torch.no_grad():
            rec.measure(f"conv/{name}/fwd", "GFLOP/s", gflop,
                        lambda: F.conv2d(x, w, stride=stride, padding=pad, groups=groups))
            if needs_dx:
                rec.measure(f"conv/{name}/grad_input", "GFLOP/s", gflop, bwd([True, False, False]))
            rec.measure(f"conv/{name}/grad_weight", "GFLOP/s", gflop, bwd([False, True, False]))


NORM_LAYERS = [  # name, batch, channels, side, ReLU6 (same list as the Rust side)
    ("r18-64@32", 64, 64, 32, False),
    ("r18-128@16", 64, 128, 16, False),
    ("r18-512@4", 64, 512, 4, False),
    ("mbv2-144@16", 64, 144, 16, True),
]


def norm(rec):
    for i, (name, batch, c, hw, relu6) in enumerate(NORM_LAYERS):
        x = seeded(300 + i, (batch, c, hw, hw)).requires_grad_(True)
        gamma = (seeded(400 + i, (c,), 0.5) + 1.0).requires_grad_(True)
        beta = seeded(500 + i, (c,), 0.5).requires_grad_(True)
        dy = seeded(600 + i, (batch, c, hw, hw))
        act = F.relu6 if relu6 else F.relu

        def fwd():
            return act(F.batch_norm(x, None, None, gamma, beta, training=True, eps=1e-5))

        def fwd_bwd():
            x.grad, gamma.grad, beta.grad = None, None, None
            (fwd() * dy).sum().backward()

        with torch.no_grad():
            rec.measure(f"norm/{name}/fwd", "Melem/s", x.numel() / 1e6, fwd)
        rec.measure(f"norm/{name}/fwd+bwd", "Melem/s", x.numel() / 1e6, fwd_bwd)


def fake_quant(rec):
    for name, shape, per_channel in [("act-64x256x16x16", (64, 256, 16, 16), False),
                                     ("weight-512x512x3x3", (512, 512, 3, 3), True)]:
        numel = math.prod(shape)
        for bits in (2, 4):
            x = seeded(7, shape).requires_grad_(True)
            if per_channel:
                qn, qp, channels = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1, shape[0]
            else:
                qn, qp, channels = 0, 2 ** bits - 1, 1
            step = torch.full((channels,) if per_channel else (), 0.1, device=DEV, requires_grad=True)
            g = 1.0 / math.sqrt(numel / channels * qp)
            for side, fn in [("torch", lsq_composed), ("torch-handwritten", lsq_handwritten)]:
                def run(fn=fn):
                    x.grad, step.grad = None, None
                    fn(x, step, qn, qp, g, per_channel).sum().backward()

                rec.measure(f"fake_quant/{name}/{bits}bit", "Melem/s", numel / 1e6, run, side=side)


def step(rec):
    for model, quant, batch in [("resnet18", "fp32", 64), ("resnet18", "w4a4", 64), ("resnet18", "w2a2", 64),
                                ("smallcnn", "w2a2", 128), ("mobilenetv2", "w4a4", 64)]:
        name = f"step/{model}-{quant}-b{batch}"
        if rec.wants(name):
            rec.measure(name, "images/s", batch, train_step_runner(model, quant, batch))


def scoring(rec):
    for model in ("resnet18", "smallcnn"):
        batch = 256
        reference, student = build(model, "fp32"), build(model, "w2a2")
        x = seeded(5, input_shape(model, batch))
        y = torch.arange(batch, device=DEV) % 10
        calibrate(reference, x)
        calibrate(student, x)
        reference.eval()
        student.eval()
        onehot = F.one_hot(y, 10).float()

        def scores(q, f):
            pq, pf = q.softmax(1), f.softmax(1)
            evs = (pq - onehot).norm(dim=1)
            ds = (pq - pf).norm(dim=1)
            res = (pq * (q.log_softmax(1) - f.log_softmax(1))).sum(1)
            return evs.cpu().numpy(), ds.cpu().numpy(), res.cpu().numpy()

        with torch.no_grad():
            rec.measure(f"scoring/{model}-w2a2-b{batch}", "images/s", batch, lambda: scores(student(x), reference(x)))
            cached = reference(x)
            rec.measure(f"scoring/{model}-w2a2-b{batch}-cached-reference", "images/s", batch,
                        lambda: scores(student(x), cached))


def selection(rec):
    n, classes, frac = 1_280_000, 1000, 0.1
    g = torch.Generator().manual_seed(1)
    scores = torch.rand(n, generator=g)
    labels = torch.randint(0, classes, (n,), generator=g)

    def select():
        counts = torch.bincount(labels, minlength=classes)
        # quarc's ClassBalanced: class c gets round(f * n_c) samples (half away from zero), at least 1
        k = torch.minimum(torch.clamp(torch.floor(counts.double() * frac + 0.5).long(), min=1), counts)
        order = torch.argsort(labels.double() * 2.0 - scores.double(), stable=True)  # by class, score descending
        starts = torch.cumsum(counts, 0) - counts
        sorted_labels = labels[order]
        rank = torch.arange(n) - starts[sorted_labels]
        chosen = order[rank < k[sorted_labels]]
        out = torch.sort(chosen).values
        assert out.numel() == int(k.sum())
        return out

    rec.measure("selection/class-balanced-top10pct-1.28M-1000", "ms", 0, select)


def memory(rec, spec):
    model, quant = spec.split("-", 1)
    batch = 128 if model == "smallcnn" else 64
    run = train_step_runner(model, quant, batch)
    for _ in range(3):
        run()
    mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    name = f"memory/{model}-{quant}-b{batch}-peak-rss"
    print(f"torch              {name:<44} {mib:>10.1f} MiB")
    rec.write(dict(side="torch", workload=name, unit="MiB", value=round(mib, 1), higher_is_better=False, median_s=0,
                   runs_s=[]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--group", default="all")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default="bench/results/latest.jsonl")
    ap.add_argument("--filter", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (gemm, conv, fake_quant, step, scoring)")
    ap.add_argument("--label", default="", help="appended to the side's name in the records, e.g. '+retained' for a "
                    "run under other allocator settings")
    a = ap.parse_args()
    global DEV
    DEV = torch.device(a.device)
    if DEV.type == "cuda":
        # Like for like with candle's f32 GEMMs: no TF32 in matmuls or cuDNN convolutions.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    rec = Recorder(a.out, max(1, a.reps), a.filter, a.label)
    if a.group.startswith("memory-"):
        return memory(rec, a.group[len("memory-"):])
    groups = dict(gemm=gemm, conv=conv, norm=norm, fake_quant=fake_quant, step=step, scoring=scoring, selection=selection)
    if DEV.type != "cpu":
        groups = {k: v for k, v in groups.items() if k in ("gemm", "conv", "norm", "fake_quant", "step", "scoring")}
    for name, fn in groups.items():
        if a.group in ("all", name):
            fn(rec)


if __name__ == "__main__":
    main()

"""Pruning scores: how important each weight is (higher = more worth keeping). Chosen by name from a registry.

A score function takes a :class:`ScoreContext` and returns one tensor per masked parameter, shaped like it. Scores of
weights that are already pruned do not matter: allocation never revives them. Scores that look at the network (SNIP,
GraSP, SynFlow) score the *masked* network, and leave the module's weights, buffers and train/eval modes as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from lt_lightning.masks import Masks, named_parameters, tensor_names
from lt_lightning.registry import Registry


@dataclass
class ScoreContext:
    """What a score may look at: the module, its current masks and, for data-driven scores, batches and a loss.

    ``loss_fn(module, batch)`` returns a scalar loss; ``generator`` seeds random scores; ``example_input`` is one input
    batch (a tensor, or a tuple of them) whose shape data-free scores (SynFlow) feed ones of.
    """

    module: nn.Module
    masks: Masks
    batches: Iterable[Any] | None = None
    loss_fn: Callable[[nn.Module, Any], Tensor] | None = None
    generator: torch.Generator | None = None
    example_input: Tensor | tuple[Tensor, ...] | Mapping[str, Tensor] | None = None

    def parameters(self) -> dict[str, nn.Parameter]:
        """The masked parameters, by name."""
        params = named_parameters(self.module)
        return {name: params[name] for name in self.masks}


ScoreFn = Callable[[ScoreContext], Mapping[str, Tensor]]

#: What a score may need, declared when it is registered: training batches and a loss (``context.batches``,
#: ``context.loss_fn``), one input whose shape it feeds (``context.example_input``), or pruning in many small steps
#: (an iterative schedule, as SynFlow's) rather than once.
BATCHES, EXAMPLE_INPUT, ITERATIVE = "batches", "example_input", "iterative"

SCORES: Registry[ScoreFn] = Registry("score", capabilities=(BATCHES, EXAMPLE_INPUT, ITERATIVE))


def register_score(name: str, needs: Iterable[str] = ()) -> Callable[[ScoreFn], ScoreFn]:
    """Register ``fn(context) -> {name: scores}`` under ``name``, declaring what it ``needs`` (some of ``"batches"``,
    ``"example_input"``, ``"iterative"``): the callbacks read it and refuse a score they cannot serve before any
    training (IMPCallback gives its scores no data; PruneAtInitCallback gives batches, an input and a schedule).
    Use as a decorator.

    >>> @register_score("abs_times_two")
    ... def _double(context):
    ...     return {n: 2 * p.detach().abs() for n, p in context.parameters().items()}
    >>> "abs_times_two" in SCORES, SCORES.needs("abs_times_two"), sorted(SCORES.needs("snip"))
    (True, frozenset(), ['batches'])
    >>> del SCORES["abs_times_two"]
    """
    return SCORES.register(name, needs)


check_score = SCORES.check


def compute_scores(name: str, context: ScoreContext) -> dict[str, Tensor]:
    """Run the score registered as ``name`` and check that it scored every masked parameter with the right shape."""
    check_score(name)
    scores = dict(SCORES[name](context))
    for param_name, mask in context.masks.items():
        if param_name not in scores or scores[param_name].shape != mask.shape:
            raise ValueError(f"score {name!r} returned no {tuple(mask.shape)} tensor for parameter {param_name!r}.")
    return scores


@register_score("magnitude")
def magnitude(context: ScoreContext) -> dict[str, Tensor]:
    """``|w|``: iterative magnitude pruning (Frankle & Carbin 2019).

    >>> lin = nn.Linear(2, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = lin.weight.copy_(torch.tensor([[-3.0, 1.0]]))
    >>> magnitude(ScoreContext(lin, Masks.dense(lin, ["weight"])))["weight"].tolist()
    [[3.0, 1.0]]
    """
    return {name: p.detach().abs() for name, p in context.parameters().items()}


@register_score("random")
def random(context: ScoreContext) -> dict[str, Tensor]:
    """Uniform random scores: random pruning, the baseline every criterion must beat."""
    return {
        name: torch.rand(p.shape, generator=context.generator).to(p.device)
        for name, p in context.parameters().items()
    }


@register_score("snip", needs=[BATCHES])
def snip(context: ScoreContext) -> dict[str, Tensor]:
    """``|w * dL/dw|``, the loss gradient summed over ``context.batches``: connection sensitivity (Lee et al. 2019).

    >>> lin = nn.Linear(2, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = lin.weight.copy_(torch.tensor([[1.0, -2.0]]))
    >>> mse = lambda module, batch: nn.functional.mse_loss(module(batch[0]), batch[1])
    >>> batch = (torch.tensor([[1.0, 1.0]]), torch.tensor([[0.0]]))  # loss (1 - 2)^2, gradient 2 * (-1) * x = [-2, -2]
    >>> snip(ScoreContext(lin, Masks.dense(lin, ["weight"]), [batch], mse))["weight"].tolist()
    [[2.0, 4.0]]
    """
    batches = _training_data(context, "SNIP")
    weights = _masked_weights(context)
    grads = _gradient(context, weights, batches)
    return {name: (w.detach() * g).abs() for (name, w), g in zip(weights.items(), grads)}


@register_score("grasp", needs=[BATCHES])
def grasp(context: ScoreContext) -> dict[str, Tensor]:
    """``w * Hg`` (Wang et al. 2020, Gradient Signal Preservation): ``H`` and ``g`` are the Hessian and gradient of the
    loss summed over ``context.batches``; ``Hg`` comes from a second backward pass through ``g . dL/dw``.

    >>> lin = nn.Linear(2, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = lin.weight.copy_(torch.tensor([[1.0, -2.0]]))
    >>> mse = lambda module, batch: nn.functional.mse_loss(module(batch[0]), batch[1])
    >>> batch = (torch.tensor([[1.0, 1.0]]), torch.tensor([[0.0]]))  # g = [-2, -2], H = 2 x x^T, Hg = [-8, -8]
    >>> grasp(ScoreContext(lin, Masks.dense(lin, ["weight"]), [batch], mse))["weight"].tolist()
    [[-8.0, 16.0]]
    """
    # Sign: removing weight w (a step of -w) changes the gradient flow g^T g by about 2 * (-w * Hg). Wang et al. score
    # S(-w) = -w * Hg and remove the weights with the HIGHEST S, whose removal reduces the flow least (their code
    # keeps `-w * Hg <= threshold`). Keeping the highest w * Hg is that same mask in our higher-is-kept convention.
    # (Their code also divides the logits by a temperature T = 200; here the loss is the module's own.)
    batches = _training_data(context, "GraSP")
    weights = _masked_weights(context)
    grad = _gradient(context, weights, batches)
    hg = [torch.zeros_like(w) for w in weights.values()]
    for batch in batches:
        grads = torch.autograd.grad(_loss(context, weights, batch), list(weights.values()), create_graph=True,
                                    allow_unused=True)
        flow = [(g * d).sum() for g, d in zip(grad, grads) if d is not None and d.requires_grad]
        if flow:  # else the loss is linear in the weights: H = 0
            try:
                second = torch.autograd.grad(sum(flow), list(weights.values()), allow_unused=True)
            except RuntimeError as err:
                if "derivative for" not in str(err):
                    raise
                raise ValueError(f"GraSP needs second derivatives (Hessian-gradient products), but"
                                 f" {_layer_of(context, weights, batch, str(err))} has none in this PyTorch ({err})."
                                 " Use a score without them: 'snip', 'synflow', 'magnitude' or 'random'.") from err
            for total, part in zip(hg, second):
                if part is not None:
                    total += part
    return {name: w.detach() * h for (name, w), h in zip(weights.items(), hg)}


@register_score("synflow", needs=[EXAMPLE_INPUT, ITERATIVE])
def synflow(context: ScoreContext) -> dict[str, Tensor]:
    """``|w * dR/dw|`` with ``R`` the sum of the outputs of the network with weights ``|w|`` on an input of ones:
    Iterative Synaptic Flow (Tanaka et al. 2020), data-free. Computed in float64 (``R`` is a product over layers and
    overflows float32), in eval mode (BatchNorm uses its running statistics); the module is left as it was.

    For ``y = W2 W1 x``: ``R = 1^T |W2| |W1| 1``, so the scores are ``|W1| * (|W2|^T 1) 1^T`` and
    ``|W2| * 1 (|W1| 1)^T``.

    >>> net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False))
    >>> with torch.no_grad():
    ...     _ = net[0].weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 4.0]]))
    ...     _ = net[1].weight.copy_(torch.tensor([[-1.0, 2.0]]))
    >>> scores = synflow(ScoreContext(net, Masks.dense(net, ["0.weight", "1.weight"]), example_input=torch.zeros(5, 2)))
    >>> scores["0.weight"].tolist(), scores["1.weight"].tolist()
    ([[1.0, 2.0], [6.0, 8.0]], [[3.0, 14.0]])
    """
    if context.example_input is None:
        raise ValueError("SynFlow needs the shape of one input (it feeds ones of that shape, no data): pass"
                         " ScoreContext(example_input=...).")
    module = context.module
    inputs = context.example_input if isinstance(context.example_input, (tuple, list, Mapping)) else (
        context.example_input,)
    masked = _masked_weights(context, dtype=torch.float64, transform=torch.abs)
    state = {name: t.detach().abs().double() if t.is_floating_point() else t
             for name, t in [*module.named_parameters(), *module.named_buffers()]}
    own = tensor_names(module)  # functional_call takes a compiled module's own names
    state.update({own[name]: w for name, w in masked.items()})
    # Ones in the input's own dtype for integer inputs (token ids: token 1 everywhere), float64 for the others.
    def ones_like(x: Tensor) -> Tensor:
        dtype = torch.float64 if x.is_floating_point() else x.dtype
        return torch.ones((1, *x.shape[1:]), dtype=dtype, device=x.device)

    if isinstance(context.example_input, Mapping):
        args, kwargs = (), {k: ones_like(v) for k, v in context.example_input.items()}
    else:
        args, kwargs = tuple(ones_like(x) for x in inputs), {}
    with _eval_mode(module):
        outputs = functional_call(module, state, args, kwargs)
    total = sum(out.sum() for out in (outputs if isinstance(outputs, (tuple, list)) else (outputs,)))
    grads = torch.autograd.grad(total, list(masked.values()), allow_unused=True)
    return {name: (w.detach() * (g if g is not None else torch.zeros_like(w))).abs()
            for (name, w), g in zip(masked.items(), grads)}


def _layer_of(context: ScoreContext, weights: Mapping[str, Tensor], batch: Any, error: str) -> str:
    """The module whose forward made the autograd node named in ``error`` ("derivative for aten::OP is not
    implemented"): forward hooks fire innermost first, so each claims the nodes its output adds to the graph."""
    op = error.split("aten::")[-1].split()[0].replace("_", "").lower() if "aten::" in error else ""
    claimed: dict[Any, str] = {}

    def claim(module_name: str, output: Any) -> None:
        stack = [t.grad_fn for t in (output if isinstance(output, (tuple, list)) else (output,))
                 if isinstance(t, Tensor) and t.grad_fn is not None]
        while stack:
            node = stack.pop()
            if node is None or node in claimed:
                continue
            claimed[node] = module_name
            stack.extend(parent for parent, _ in node.next_functions)

    handles = [m.register_forward_hook(lambda mod, args, out, n=n: claim(n, out))
               for n, m in context.module.named_modules() if n]
    try:
        with torch.enable_grad():
            _loss(context, weights, batch)
    finally:
        for handle in handles:
            handle.remove()
    for node, module_name in claimed.items():
        if op and type(node).__name__.lower().replace("backward0", "").replace("backward", "") in op:
            layer = context.module.get_submodule(module_name)
            return f"layer {module_name!r} ({type(layer).__name__})"
    return "an operation of the model" + (f" ({op})" if op else "")


def _training_data(context: ScoreContext, method: str) -> list[Any]:
    batches = list(context.batches) if context.batches is not None else []
    if not batches or context.loss_fn is None:
        raise ValueError(
            f"{method} needs batches of training data and a loss: ScoreContext(batches=..., loss_fn=...) got"
            f" {len(batches)} batches and loss_fn={context.loss_fn!r}."
        )
    return batches


def _masked_weights(
    context: ScoreContext, dtype: torch.dtype | None = None, transform: Callable[[Tensor], Tensor] | None = None
) -> dict[str, Tensor]:
    """Leaf copies of the masked parameters with pruned weights at zero, to differentiate with respect to."""
    weights = {}
    for name, param in context.parameters().items():
        value = param.detach().to(dtype or param.dtype)
        value = transform(value) if transform is not None else value
        weights[name] = (value * context.masks[name].to(value.device, value.dtype)).requires_grad_()
    return weights


class _LossOf(nn.Module):
    """``loss_fn(module, batch)`` as a module, so that ``functional_call`` can run it with substituted tensors."""

    def __init__(self, module: nn.Module, loss_fn: Callable[[nn.Module, Any], Tensor]) -> None:
        super().__init__()
        self.module = module
        self.loss_fn = loss_fn

    def forward(self, batch: Any) -> Tensor:
        return self.loss_fn(self.module, batch)


def _loss(context: ScoreContext, weights: Mapping[str, Tensor], batch: Any) -> Tensor:
    """The loss of the masked network. Buffers are substituted by copies, so that BatchNorm statistics stay as they
    were; the module's own parameters are never written."""
    assert context.loss_fn is not None
    state = {f"module.{name}": buf.clone() for name, buf in context.module.named_buffers()}
    own = tensor_names(context.module)  # functional_call takes a compiled module's own names
    state.update({f"module.{own[name]}": w for name, w in weights.items()})
    loss = functional_call(_LossOf(context.module, context.loss_fn), state, (batch,))
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise ValueError(f"loss_fn must return a scalar tensor; it returned {loss!r}.")
    return loss.reshape(())


def _gradient(context: ScoreContext, weights: Mapping[str, Tensor], batches: Sequence[Any]) -> list[Tensor]:
    """The loss gradient with respect to ``weights``, summed over ``batches``."""
    total = [torch.zeros_like(w) for w in weights.values()]
    for batch in batches:
        grads = torch.autograd.grad(_loss(context, weights, batch), list(weights.values()), allow_unused=True)
        for acc, g in zip(total, grads):
            if g is not None:
                acc += g
    return total


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training

"""Adam for the training loop: ``torch.optim.Adam`` with less per-step bookkeeping on the CPU.

With the fused kernel, ``torch.optim.Adam.step`` spends about as long in Python
(``_init_group``, regrouping the tensors by device and dtype) as in the update itself for
scVI-sized networks, and ``zero_grad`` opens a profiler record to walk the parameters. Once every
parameter that has a gradient has its state, :class:`Adam` calls the same fused kernel with
lists it gathers directly (and counts the steps of the parameters updated together in one
buffer), so the updates are bit-identical; anything out of the ordinary (a
closure, AMSGrad, a tensor learning rate, a parameter seen for the first time, a GPU)
goes through ``torch.optim.Adam.step``. Step hooks run once either way: torch wraps the
``step`` of every optimizer class with them.
"""
from typing import Callable, List, Optional

import torch

# torch.optim.Adam.step without torch's hook wrapper (which also wraps this class's step)
_torch_adam_step = getattr(torch.optim.Adam.step, "__wrapped__", torch.optim.Adam.step)


class Adam(torch.optim.Adam):
    """:class:`torch.optim.Adam` (same arguments, state and results) with a shorter fused CPU step."""

    def _plain_groups(self) -> bool:
        """Whether every group's settings are the common case the short step covers."""
        for group in self.param_groups:
            if not group.get("fused") or group["amsgrad"] or group["maximize"] or group["capturable"]:
                return False
            if group["differentiable"] or group.get("decoupled_weight_decay", False):
                return False
            if isinstance(group["lr"], torch.Tensor):
                return False
        return True

    def _gather(self) -> Optional[List[tuple]]:
        """Per group: parameters with gradients and their state lists; ``None`` if one lacks state."""
        work = []
        for group in self.param_groups:
            params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
            for param in group["params"]:
                grad = param.grad
                if grad is None:
                    continue
                state = self.state.get(param)
                if not state or grad.is_sparse or param.device.type != "cpu":
                    return None
                params.append(param)
                grads.append(grad)
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
                steps.append(state["step"])
            work.append((group, params, grads, exp_avgs, exp_avg_sqs, steps))
        return work

    @torch.no_grad()
    def step(self, closure: Optional[Callable] = None):
        """One Adam update (see :meth:`torch.optim.Adam.step`)."""
        work = self._gather() if closure is None and self._plain_groups() else None
        if work is None:
            return _torch_adam_step(self, closure)
        for group_index, (group, params, grads, exp_avgs, exp_avg_sqs, steps) in enumerate(work):
            if not params:
                continue
            beta1, beta2 = group["betas"]
            steps = self._increment_steps(group_index, params, steps)
            torch._fused_adam_(
                params,
                grads,
                exp_avgs,
                exp_avg_sqs,
                [],
                steps,
                amsgrad=False,
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                maximize=False,
                grad_scale=None,
                found_inf=None,
            )
        return None

    def _increment_steps(
        self, group_index: int, params: List[torch.Tensor], steps: List[torch.Tensor]
    ) -> List[torch.Tensor]:
        """Add one to the step counts of ``params`` (one operation on a shared buffer); return them.

        ``_foreach_add_`` on a few dozen scalar tensors costs as much as the update of a small
        network. The counts of a group's parameters updated together become views of one buffer
        (same values, dtype and device), rebuilt whenever that set changes (a parameter without
        a gradient keeps its count, now outside the buffer); torch's own step still increments
        each view once.
        """
        buffers = self.__dict__.setdefault("_step_buffers", {})
        key = tuple(map(id, steps))
        cached = buffers.get(group_index)
        if cached is None or cached[0] != key:
            buffer = torch.stack([step.detach() for step in steps])
            views = list(buffer.unbind())
            for param, view in zip(params, views):
                self.state[param]["step"] = view
            cached = buffers[group_index] = (tuple(map(id, views)), buffer, views)  # views keep their ids alive
        cached[1].add_(1)
        return cached[2]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients (see :meth:`torch.optim.Optimizer.zero_grad`)."""
        if not set_to_none:
            return super().zero_grad(set_to_none)
        for group in self.param_groups:
            for param in group["params"]:
                param.grad = None

"""Self-test job: fits y = 3x + 1 with a tiny linear model on the job's device.

It exercises everything a training job does (device choice, per-step metrics, progress,
cooperative cancel, complete-marked checkpoints and resume) in seconds, so a new install, a
new worker or a new GPU can be checked from the Monitor tab or with ``workbench selftest``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from workbench.job_context import JobContext
from workbench.safe_text import counted


@dataclass
class Config:
    steps: int = field(default=30, metadata={"help": "optimisation steps"})
    step_seconds: float = field(default=0.1, metadata={"help": "pause after each step"})
    lr: float = field(default=0.05, metadata={"help": "learning rate"})
    checkpoint_every: int = field(default=10, metadata={"help": "steps between checkpoints (0: none)"})
    fail_at_step: int | None = field(default=None, metadata={"help": "raise an error at this step, to check failure reporting"})
    seed: int = 0

    def validate(self) -> None:
        if self.steps < 1:
            raise ValueError("steps must be at least 1")
        if self.step_seconds < 0 or self.lr <= 0 or self.checkpoint_every < 0:
            raise ValueError("step_seconds and checkpoint_every must be >= 0 and lr > 0")


def run(config: Config, context: JobContext) -> dict:
    import torch
    from safetensors.torch import load_file, save_file

    reporter = context.reporter
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(config.seed)
    model = torch.nn.Linear(1, 1).to(device)
    start = 0
    if context.resume_from is not None:
        state = load_file(str(context.resume_from / "model.safetensors"), device=device)
        start = int(state.pop("step").item())
        model.load_state_dict(state)
        reporter.log(f"resumed from {context.resume_from.name} (step {start})")
    reporter.log(f"selftest on {device}: {counted(config.steps, 'step')}, lr {config.lr}")
    x = torch.linspace(-1, 1, 64, device=device).unsqueeze(1)
    y = 3 * x + 1
    loss = None
    for step in range(start + 1, config.steps + 1):
        reporter.check_cancel()
        if config.fail_at_step is not None and step == config.fail_at_step:
            raise RuntimeError(f"failure requested at step {step}")
        model.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        with torch.no_grad():  # plain SGD by hand: torch.optim pulls in torch._dynamo (seconds)
            for param in model.parameters():
                param -= config.lr * param.grad
        reporter.metrics(step, loss=loss.item(), weight=model.weight.item(), bias=model.bias.item())
        reporter.progress(step, config.steps, f"loss {loss.item():.4f}")
        if step % 5 == 0 or step == config.steps:
            reporter.log(f"step {step}/{config.steps} loss {loss.item():.4f}")
        if config.checkpoint_every and step % config.checkpoint_every == 0:
            folder = reporter.checkpoint_dir(step)
            state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
            save_file({**state, "step": torch.tensor(step)}, str(folder / "model.safetensors"))
            reporter.checkpoint_complete(folder)
        time.sleep(config.step_seconds)
    return {"device": device, "final_loss": None if loss is None else round(loss.item(), 6),
            "weight": round(model.weight.item(), 4), "bias": round(model.bias.item(), 4)}

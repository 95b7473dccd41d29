"""``alphagrpo demo``: the embedded-default demo.

For now: starts the decomposer (rules backend) and the verifier (embedded default model) as local
processes on free ports, then asks ``/v1/reward`` for the DVReward of an example image with the
``dvreward`` client, printing each question with its P(yes). The trainer issue turns this into the
end-to-end GRPO demo.
"""

from __future__ import annotations

import base64
from pathlib import Path

import typer

from dvreward.client import VerifierClient
from dvreward.schemas import RewardItem
from serving.launch import start_decomposer, start_verifier

EXAMPLE_IMAGE = Path(__file__).resolve().parents[2] / "docs" / "example.png"


def run_demo(prompt: str, image: Path | None = None) -> None:
    image = image or EXAMPLE_IMAGE
    b64 = base64.b64encode(image.read_bytes()).decode()
    decomposer, durl = start_decomposer()
    typer.echo(f"decomposer (rules backend) on {durl}; starting the verifier ...")
    with decomposer:
        verifier, vurl = start_verifier(env={"VERIFIER_DECOMPOSER_URL": durl})
        with verifier, VerifierClient(vurl) as client:
            model = client.health().model
            res = client.reward([RewardItem(prompt=prompt, image=b64)]).results[0]
            if res.error is not None:
                raise typer.Exit(f"reward failed: {res.error.message}")
            typer.echo(f'\nprompt: "{prompt}"\nimage:  {image}\nverifier model: {model}\n')
            for q, s in zip(res.questions, res.scores):
                p = f"{s.p_yes:.3f}" if s.p_yes is not None else f"NaN ({s.reason})"
                typer.echo(f"  {q.id:4s} {q.kind:8s} {q.tag:11s} P(yes)={p}  {q.text}")
            fmt = lambda x: "NaN" if x is None else f"{x:.4f}"  # noqa: E731
            typer.echo(f"\nsemantic {fmt(res.semantic)}  quality {fmt(res.quality)}  "
                       f"DVReward = sqrt(semantic x quality) = {fmt(res.reward)}")  # fmt: skip
            if "random" in model:
                typer.echo("\n(the embedded verifier has random weights until the ShapesWorld model ships: the "
                           "arithmetic is real, the scores carry no information)")  # fmt: skip

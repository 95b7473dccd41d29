"""``alphagrpo demo``: the embedded-default demo. For now it starts the decomposer (rules backend) as a
local process on a free port and decomposes an example prompt over HTTP with the ``dvreward`` client;
the trainer issue turns it into the end-to-end GRPO demo."""

from __future__ import annotations

import typer

from dvreward.client import DecomposerClient
from serving.launch import start_decomposer


def run_demo(prompt: str) -> None:
    server, url = start_decomposer()
    typer.echo(f"starting the decomposer (rules backend) on {url} ...")
    with server, DecomposerClient(url) as client:
        result = client.decompose([prompt]).results[0]
        d = result.decomposition
        if d is None:
            raise typer.Exit(f"decomposition failed: {result.error}")
        typer.echo(f'\nprompt: "{d.prompt}"  (backend={d.backend}, complete={d.complete})\n')
        for q in d.questions:
            parents = f"  <- {', '.join(q.parents)}" if q.parents else ""
            typer.echo(f"  {q.id:4s} {q.kind:8s} {q.tag:11s} {q.text}{parents}")
        typer.echo(f"\n{len(d.semantic)} semantic and {len(d.quality)} quality questions; "
                   "an MLLM answers each with P(yes), and DVReward = sqrt(mean semantic x mean quality).")  # fmt: skip

"""The numbers in README.md and docs/*.md, generated from what the commands stored (one source of truth).

`blocks`: the block syntax (documented there), the parser, the sources, the renderer registry and the
writer (`render_text`, `render_docs`); `renderers`: one small function per block KIND. Every public
name of both is importable from here.
"""
from __future__ import annotations

from .blocks import (  # noqa: F401 - re-exported
    BLOCK, DOC_GLOBS, RENDERERS, Block, DocsNumbersError, Renderer, doc_files, fmt, load_source, md_region, md_table,
    number, parse_block, render_docs, render_text, renderer, select, span,
)
from .renderers import (  # noqa: F401 - re-exported; importing it registers the renderers
    BENCH_PARTS, FAITHFULNESS_MEASURES, FAITHFULNESS_METHODS, bench_sections, render_bench, render_bench_table,
    render_faithfulness_tables, render_fleet, render_include, render_latency, render_parameters, render_ratio,
    render_rules, render_states_validate, render_topics, render_value,
)

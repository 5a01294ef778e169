#!/usr/bin/env python3
"""Reference renderer for spillway's chat-template tests.

Renders a chat template the way Hugging Face transformers does
(apply_chat_template): an ImmutableSandboxedEnvironment with trim_blocks,
lstrip_blocks and the loopcontrols extension, a `generation` tag that renders
its body unchanged, `tojson` as plain json.dumps, and the globals
raise_exception and strftime_now.  The context is messages, tools (None when
absent), documents (None), add_generation_prompt, bos_token and eos_token.

strftime_now reads the clock, so for repeatable output the environment
variable SPILLWAY_NOW (Unix seconds) fixes it, read as UTC.

  jinja_oracle.py TEMPLATE --messages FILE [--tools FILE]
                  [--no-generation-prompt] [--bos TEXT] [--eos TEXT]
      prints the rendering (no newline added); on failure prints
      "error: ..." to stderr and exits 1.
  jinja_oracle.py --batch JOBS
      JOBS is a JSON list of {"template", "messages", "tools",
      "add_generation_prompt", "bos", "eos", "extra", "out"} (a chat
      rendering; extra holds more variables) or {"source", "vars", "out"}
      (template text rendered with exactly vars); each rendering is written
      to "out", or "out".err holding the error text.
"""
import argparse
import datetime
import json
import os
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


class GenerationTag(jinja2.ext.Extension):
    """{% generation %}...{% endgeneration %}: the body, unchanged."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.Scope(body, lineno=lineno)


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                      separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    fixed = os.environ.get("SPILLWAY_NOW")
    if fixed:
        now = datetime.datetime.fromtimestamp(int(fixed), datetime.timezone.utc)
        now = now.replace(tzinfo=None)
    else:
        now = datetime.datetime.now()
    return now.strftime(fmt)


def make_env():
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True,
        extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def load_json(path):
    if not path:
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def render(env, template, messages, tools, add_gen, bos, eos, extra=None):
    with open(template, encoding="utf-8", newline="") as f:
        source = f.read()
    compiled = env.from_string(source)
    context = dict(messages=load_json(messages), tools=load_json(tools), documents=None,
                   add_generation_prompt=add_gen, bos_token=bos, eos_token=eos)
    context.update(extra or {})
    return compiled.render(**context)


def run_batch(env, jobs_path):
    for job in load_json(jobs_path):
        try:
            if "source" in job:
                text = env.from_string(job["source"]).render(**job.get("vars", {}))
            else:
                text = render(env, job["template"], job["messages"], job.get("tools"),
                              job.get("add_generation_prompt", True),
                              job.get("bos", ""), job.get("eos", ""), job.get("extra"))
            with open(job["out"], "w", encoding="utf-8", newline="") as f:
                f.write(text)
        except Exception as e:  # any failure is the expected answer
            with open(job["out"] + ".err", "w", encoding="utf-8") as f:
                f.write(f"{type(e).__name__}: {e}")
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("template", nargs="?")
    ap.add_argument("--messages")
    ap.add_argument("--tools")
    ap.add_argument("--no-generation-prompt", action="store_true")
    ap.add_argument("--bos", default="")
    ap.add_argument("--eos", default="")
    ap.add_argument("--batch")
    args = ap.parse_args()
    env = make_env()
    if args.batch:
        return run_batch(env, args.batch)
    if not args.template or not args.messages:
        ap.error("TEMPLATE and --messages are required")
    try:
        text = render(env, args.template, args.messages, args.tools,
                      not args.no_generation_prompt, args.bos, args.eos)
    except Exception as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

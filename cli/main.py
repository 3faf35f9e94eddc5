"""The `tapgate` command: shell-init (cli/shell_init.py) beside the gateway that runs inside mitmdump,
and a thin argparse layer over the store's queries (cli/queries.py) and their views (cli/views.py)."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sqlite3
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from cli import compare, queries, route_explain, run, shell_init
from core.database import DEFAULT_DB, ENV_DB, default_db, shown
from core.ledger import plural
from providers.safe_json import loads


def console():
    """rich, imported when a command draws: `tapgate shell-init` stays quick."""
    from rich.console import Console

    return Console(highlight=False)


def print_rows(rows: list[dict[str, Any]], columns: list[str], fmt: str) -> None:
    """JSON Lines (one object a line; JSON-in-text columns decoded) or CSV with a header."""
    if fmt == "csv":
        out = csv.DictWriter(sys.stdout, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        out.writeheader()
        out.writerows(rounded(row) for row in rows)
        return
    for row in rows:
        print(json.dumps(decoded(row), ensure_ascii=False))


def rounded(row: dict[str, Any]) -> dict[str, Any]:
    """Floats to 12 significant digits: sums of costs print 1.03, not 1.0300000000000002."""
    return {k: float(f"{v:.12g}") if isinstance(v, float) else v for k, v in row.items()}


def decoded(row: dict[str, Any]) -> dict[str, Any]:
    """The row with its JSON-in-text columns (metadata, attributes, policies) as JSON, floats rounded."""
    out = rounded(row)
    for key in ("metadata", "attributes", "policies"):
        if isinstance(out.get(key), str):
            try:
                out[key] = loads(out[key])
            except ValueError:
                pass  # not JSON after all: keep the text as stored
    return out


def time_range(args: argparse.Namespace) -> tuple[str | None, str | None]:
    return (queries.parse_when(args.since) if args.since else None,
            queries.parse_when(args.until) if args.until else None)


def cmd_top(args: argparse.Namespace) -> int:
    from rich.live import Live

    from cli.snapshot import Tally, snapshot
    from cli.views import DashboardView
    from core.journal import read_status

    conn = queries.connect(args.db)
    tally = Tally(args.window * 60)
    tally.seed(conn, time.time())
    # The writers report beside their journal, beside tapgate_db: for PostgreSQL, this machine's
    # gateways on the default tapgate_db, if any run.
    db = Path(DEFAULT_DB if getattr(conn, "postgres", False) else args.db).expanduser()
    view = lambda: DashboardView(snapshot(tally, time.time(), shown(args.db), read_status(db)))  # noqa: E731
    if args.once:
        console().print(view())
        return 0
    with Live(get_renderable=view, console=console(), screen=True, auto_refresh=False,
              redirect_stdout=False, redirect_stderr=False) as live:
        try:
            while True:  # a reader polling a file: nothing to await but the clock
                tally.follow(conn)
                live.refresh()
                time.sleep(args.interval)
        except KeyboardInterrupt:
            return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from cli.views import calls_table

    since, until = time_range(args)
    meta = []
    for item in args.meta:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise queries.StoreError(f"--meta takes key=value, not {item!r}")
        meta.append((key, value))
    filters = queries.Filters(provider=args.provider, model=args.model, status=args.status, mode=args.mode,
                              customer=args.customer, thread=args.thread, meta=meta, since=since, until=until,
                              grep=args.grep, policy=args.policy)
    conn = queries.connect(args.db)
    rows = queries.logs(conn, filters, args.limit, bodies=args.bodies)
    scores = queries.scores_of(conn, [r["id"] for r in rows])
    for row in rows:
        row["scores"] = queries.score_text(scores.get(row["id"], [])) if not args.format else scores.get(row["id"], [])
    if args.format:
        columns = [*queries.CALL_COLUMNS, *(queries.BODY_COLUMNS if args.bodies else ()), "scores"]
        print_rows(rows, columns, args.format)
        return 0
    out = console()
    ids = queries.unique_prefixes(conn, [r["id"] for r in rows])
    out.print(calls_table(rows, out.width, title=f"{plural(len(rows), 'call')}, newest first", ids=ids))
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    from cli.views import trace_tree

    conn = queries.connect(args.db)
    trace_id = queries.resolve_trace(conn, args.id)
    spans, requests = queries.trace(conn, trace_id)
    for call_id, scores in queries.scores_of(conn, list(requests)).items():
        requests[call_id]["scores"] = queries.score_text(scores)
    console().print(trace_tree(trace_id, spans, requests))
    return 0


def cmd_thread(args: argparse.Namespace) -> int:
    from cli.views import thread_view

    rows = queries.thread(queries.connect(args.db), args.id)
    if not rows:
        raise queries.StoreError(f"no calls in thread {args.id!r}")
    console().print(thread_view(args.id, rows, full=args.full))
    return 0


def cmd_spend(args: argparse.Namespace) -> int:
    from cli.views import spend_table

    since, until = time_range(args)
    rows = queries.spend(queries.connect(args.db), args.by, since, until)
    if args.format:
        rows = [{args.by: r.pop("name"), **r} for r in rows]
        print_rows(rows, [args.by, "requests", "input_tokens", "output_tokens", "cost_usd", "unpriced", "cache_hits",
                          "saved_usd", "shadow_cost_usd"], args.format)
    else:
        out = console()
        out.print(spend_table(args.by, rows, out.width))
    return 0


def cmd_evals_report(args: argparse.Namespace) -> int:
    from cli.evals import report

    since, until = time_range(args)
    lines = report(queries.score_rows(queries.connect(args.db), args.by, since, until, args.evaluator))
    if args.format:
        print_rows(lines, ["evaluator", "group", "scores", "mean", "ci95", "pass_rate", "labels", "judge_cost_usd"],
                   args.format)
        return 0
    from cli.views import evals_report_table

    out = console()
    out.print(evals_report_table(args.by, lines, out.width))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from core.evals.feedback import BadFeedback, feedback_row

    value: Any = {"true": True, "false": False}.get(args.value.lower(), args.value)
    body: dict[str, Any] = {"evaluator": args.evaluator, "reason": args.reason}
    try:
        body["value"] = value if isinstance(value, bool) else float(value)
    except ValueError:
        body["label"] = value  # a word: a label
    conn = queries.connect(args.db)
    found = conn.execute("SELECT id FROM requests WHERE id = ? OR id LIKE ? || '%' LIMIT 2",
                         (args.call_id, args.call_id)).fetchall()
    if len(found) != 1:
        raise queries.StoreError(f"no call {args.call_id!r} in the store" if not found else
                                 f"{args.call_id!r} is the start of more than one call id; give more of it")
    try:
        row = feedback_row({**body, "call_id": found[0]["id"]})
    except BadFeedback as e:
        raise queries.StoreError(str(e)) from None
    with keys_db(args.db) as db:
        db["scores"].insert(row, replace=True)
    print(f"scored call {row['call_id']}: {row['evaluator']} = {row['label'] or format(row['value'], 'g')}")
    return 0


def cmd_prompts(args: argparse.Namespace) -> int:
    from cli import prompts

    with keys_db(args.db) as db:
        if args.action == "push":
            doc = prompts.read_file(args.file)
            version = prompts.push(db, args.name, doc)
            print(f"pushed {args.name} version {version}")
        elif args.action == "list":
            for p in prompts.listing(db):
                print(json.dumps(p) if args.format else
                      f"{p['name']}  v{p['latest']}  ({plural(p['versions'], 'version')})  {' '.join(p['labels'])}")
        elif args.action == "show":
            template = prompts.get(db, args.name, args.version)
            print(f"# {template.name} version {template.version}; variables: {', '.join(template.variables()) or 'none'}")
            print(prompts.as_text(template), end="")
        elif args.action == "diff":
            print(prompts.diff(db, args.name, args.v1, args.v2) or "no difference", end="")
        elif args.action == "label":
            prompts.label(db, args.name, args.version, args.label)
            print(f"{args.name}: {args.label} is version {args.version}; the router uses it within seconds")
    return 0


def cmd_dataset(args: argparse.Namespace) -> int:
    from cli import datasets

    if args.action == "create":
        since, until = time_range(args)
        filters = queries.Filters(provider=args.provider, model=args.model, mode=args.mode, customer=args.customer,
                                  meta=[tuple(m.partition("=")[::2]) for m in args.meta], since=since, until=until)
        rows = datasets.from_logs(queries.connect(args.db), filters, args.limit, args.expect_recorded)
        if not rows:
            raise queries.StoreError("no recorded call with its bodies matches those filters")
        with keys_db(args.db) as db:
            n = datasets.save(db, args.name, rows, {"from_logs": {k: v for k, v in vars(filters).items() if v}})
        print(f"dataset {args.name}: {plural(n, 'row')} from the logs")
    elif args.action == "import":
        with open(args.file, encoding="utf-8") as f:
            rows = datasets.import_lines(f, args.file)
        with keys_db(args.db) as db:
            n = datasets.save(db, args.name, rows, {"import": args.file})
        print(f"dataset {args.name}: {plural(n, 'row')} imported")
    elif args.action == "export":
        out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout
        try:
            for line in datasets.export_lines(datasets.rows_of(queries.connect(args.db), args.name)):
                out.write(line + "\n")
        finally:
            if args.out:
                out.close()
    elif args.action == "list":
        conn = queries.connect(args.db)
        for r in conn.execute("SELECT d.name, d.created_at, count(r.id) AS rows, count(r.expected) AS expected"
                              " FROM datasets d LEFT JOIN dataset_rows r ON r.dataset = d.name GROUP BY d.name"):
            print(f"{r['name']}  {plural(r['rows'], 'row')} ({r['expected']} with an expected answer)  {r['created_at']}")
    return 0


def cmd_replay_serve(args: argparse.Namespace) -> int:
    from cli import datasets, replay

    rows = datasets.rows_of(queries.connect(args.db), args.dataset)
    replay.serve(rows, args.host, args.port, args.speed, args.dataset)
    return 0


def cmd_eval_run(args: argparse.Namespace) -> int:
    import asyncio

    from cli import datasets
    from cli.experiment import Experiment, as_json, store_scores, summary
    from core.config import ConfigError, load_config

    rows = datasets.rows_of(queries.connect(args.db), args.dataset)
    prompt = None
    if args.prompt:
        name, sep, version = args.prompt.partition("@")
        if not name:
            raise queries.StoreError(f"--prompt takes NAME or NAME@VERSION, not {args.prompt!r}")
        prompt = (name, version or None)
    try:
        evals = load_config(args.config).evals
        experiment = Experiment(rows, args.model, args.router, args.key or os.environ.get("TAPGATE_MASTER_KEY"), evals,
                                args.evaluator, prompt, args.concurrency, args.budget_usd)
    except (ConfigError, ValueError) as e:
        raise queries.StoreError(str(e)) from None
    total = len(rows) * len(args.model)
    if args.format:
        results = asyncio.run(experiment.run())
    else:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console(), transient=True) as bar:
            task = bar.add_task(f"{args.dataset} × {len(args.model)} models", total=total)
            results = asyncio.run(experiment.run(lambda: bar.advance(task)))
    lines = summary(results, args.model, experiment.names)
    stored = store_scores(args.db, experiment.run_id, results) if args.store_scores else 0
    if args.format:
        print(as_json(experiment.run_id, args.dataset, lines, results))
        return 0
    from rich.console import Console

    from cli.views import experiment_table

    out = Console(highlight=False, record=bool(args.report))
    table = experiment_table(args.dataset, lines, experiment.names, len(rows))
    out.print(table)
    if stored:
        out.print(f"{plural(stored, 'score')} stored on the experiment's calls: tapgate evals report --by "
                  f"meta:candidate --evaluator {experiment.names[0]}")
    if experiment.skipped:
        out.print(f"{plural(experiment.skipped, 'call')} skipped: the router takes OpenAI chat and Anthropic "
                  "messages bodies only")
    if args.report:
        (out.save_svg if args.report.endswith(".svg") else out.save_html)(args.report)
        print(f"report written to {args.report}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    since, until = time_range(args)
    conn = queries.connect(args.db)
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout
    count = 0
    try:
        for request in queries.export(conn, since, until):
            request["spans"] = [decoded(s) for s in request["spans"]]
            out.write(json.dumps(decoded(request), ensure_ascii=False) + "\n")
            count += 1
    finally:
        if args.out:
            out.close()
    if args.out:
        print(f"exported {plural(count, 'request')} to {args.out}", file=sys.stderr)
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    from cli import keyadmin

    budgets = [keyadmin.parse_budget(spec) for spec in args.budget]
    meta = keyadmin.parse_meta(args.meta)
    downgrade = [keyadmin.parse_downgrade(spec) for spec in args.downgrade]
    alerts = keyadmin.parse_alerts(alert_flags(args))
    with keys_db(args.db) as db:
        key, secret = keyadmin.create_key(db, args.name, budgets, args.rpm, args.tpm, args.models, args.expires, meta,
                                          downgrade=downgrade, alerts=alerts)
    show_secret(args, "created", key.id, key.name, secret)
    return 0


def cmd_keys_update(args: argparse.Namespace) -> int:
    from cli import keyadmin

    def given(items: list[str] | None, parse) -> Any:
        """None: not given; [] for `none`; else each item parsed."""
        if items is None:
            return None
        return [] if items == ["none"] else parse(items)

    changes = {
        "name": args.name,
        "budgets": given(args.budget, lambda specs: [keyadmin.parse_budget(spec) for spec in specs]),
        "models": given(args.models, list),
        "metadata": given(args.meta, keyadmin.parse_meta),  # [] for none: no metadata
        "downgrade": given(args.downgrade, lambda specs: [keyadmin.parse_downgrade(spec) for spec in specs]),
        "alerts": alert_flags(args),
    }
    if changes["metadata"] == []:
        changes["metadata"] = {}
    for flag in ("rpm", "tpm"):
        if getattr(args, flag) is not None:
            changes[flag] = getattr(args, flag)
    if args.expires is not None:
        changes["expires"] = None if args.expires == "never" else args.expires
    with keys_db(args.db) as db:
        key = keyadmin.update_key(db, args.id, **changes)
    if args.format:
        print(json.dumps(key, ensure_ascii=False))
    else:
        print(f"updated key {key['id']} ({key['name']}); the gateway applies it within seconds")
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from cli import keyadmin

    with keys_db(args.db) as db:
        keys = keyadmin.list_keys(db)
    if args.format:
        for key in keys:
            print(json.dumps(key, ensure_ascii=False))
        return 0
    from cli.views import keys_table

    out = console()
    out.print(keys_table(keys, out.width))
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from cli import keyadmin

    with keys_db(args.db) as db:
        key = keyadmin.revoke_key(db, args.id)
    print(f"revoked key {key['id']} ({key['name']}) at {key['revoked_at']}; the gateway refuses it within seconds")
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from cli import keyadmin

    with keys_db(args.db) as db:
        key, secret = keyadmin.rotate_key(db, args.id)
    show_secret(args, "rotated", key["id"], key["name"], secret)
    return 0


def keys_db(path: str):
    """The store, created and migrated if need be, closed when the command is done."""
    from core.database import open_for_edit

    return closing(open_for_edit(path))


def show_secret(args: argparse.Namespace, done: str, key_id: str, name: str, secret: str) -> None:
    """The secret, this once: the store keeps only its hash."""
    if args.format:
        print(json.dumps({"id": key_id, "name": name, "secret": secret}))
        return
    print(f"{done} key {key_id} ({name}). Its secret, shown only this once (the store keeps a hash):\n")
    print(f"    {secret}\n")
    print(f"Send it in the proxy URL, HTTPS_PROXY=http://{secret}@127.0.0.1:8080, or as X-Tapgate-Key: {secret}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tapgate", description="tapgate: an AI gateway built as mitmproxy addons.")
    sub = p.add_subparsers(dest="command", required=True)
    shell_init.add_command(sub)
    route_explain.add_command(sub)
    run.add_command(sub)

    s = store_command(sub, "top", cmd_top, "a live dashboard of the store, refreshed while the gateway writes it",
                      "The gateway's dashboard, read from its store in another terminal (read-only).")
    s.add_argument("--window", type=int, default=5, help="minutes that rates and percentiles cover (default 5)")
    s.add_argument("--interval", type=float, default=0.5, help="seconds between refreshes (default 0.5)")
    s.add_argument("--once", action="store_true", help="print one frame and exit")

    s = store_command(sub, "logs", cmd_logs, "recorded calls, newest first, filtered",
                      "Recorded calls, newest first. Filters combine with AND.")
    s.add_argument("--provider", help="e.g. openai, anthropic, gemini")
    s.add_argument("--model", help="the model asked for or the one that answered")
    s.add_argument("--status", help="ok, error, incomplete, client_disconnected, upstream_error, or an HTTP code")
    s.add_argument("--mode", help="e.g. passthrough")
    s.add_argument("--customer", help="customer identifier")
    s.add_argument("--thread", help="thread identifier")
    s.add_argument("--policy", metavar="NAME",
                   help="calls the guardrail policy NAME acted on (flagged, redacted, blocked or over its scan limit)")
    s.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                   help="a metadata key's value (repeatable)")
    time_flags(s)
    s.add_argument("--grep", metavar="TEXT", help="text in the request or response body (ASCII case-insensitive)")
    s.add_argument("--limit", type=int, default=50, help="at most this many calls; 0 for all (default 50)")
    s.add_argument("--bodies", action="store_true", help="with --json/--csv: include the request and response bodies")
    formats(s)

    s = store_command(sub, "trace", cmd_trace, "a trace's spans as a tree, with latencies",
                      "The span tree of a trace: give a trace id, a request id, or a unique prefix of either.")
    s.add_argument("id", help="trace id or request id (or 6+ leading characters)")

    s = store_command(sub, "thread", cmd_thread, "a conversation turn by turn, with cost per turn",
                      "The calls of a thread (X-Tapgate-Thread-Identifier), oldest first: what the user said, "
                      "the answer, model, tokens and cost.")
    s.add_argument("id", help="thread identifier")
    s.add_argument("--full", action="store_true", help="do not shorten long messages")

    s = store_command(sub, "spend", cmd_spend, "cost totals by key, customer, model, provider, client, repo or a metadata key",
                      "Requests, tokens and cost per group over a period, most expensive first.")
    s.add_argument("--by", default="customer", metavar="GROUP",
                   help="key, customer, model, provider, thread, variant (experiment/variant), client (Claude Code, "
                   "an SDK...), program, repo, branch (tapgate run's tags), or meta:<key> (default customer)")
    time_flags(s)
    formats(s)

    s = store_command(sub, "export", cmd_export, "JSON Lines of requests with their spans",
                      "One JSON object a line per request, oldest first, with its spans in \"spans\".")
    time_flags(s)
    s.add_argument("--out", metavar="FILE", help="write here instead of standard output")

    evals = sub.add_parser("evals", help="scores of recorded calls, aggregated",
                           description="What the evaluators and users said about recorded calls.")
    actions = evals.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = store_command(actions, "report", cmd_evals_report, "mean score, interval and pass rate per evaluator and group",
                      "Scores of calls started in a period, per evaluator and group: how many, the mean value with "
                      "its 95% confidence interval, the pass rate, labels and what the judge cost.")
    s.add_argument("--by", default="model", metavar="GROUP",
                   help="model, customer, provider, variant (metadata variant, else the deployment), prompt "
                   "(id@version), evaluator, or meta:<key> (default model)")
    s.add_argument("--evaluator", help="only this evaluator's scores")
    time_flags(s)
    formats(s)

    s = store_command(sub, "score", cmd_score, "give a recorded call a score (user feedback)",
                      "Store a score for a call, as POST /v1/feedback does: a number, true or false, or a word "
                      "(a label). It replaces the call's earlier score from the same evaluator.")
    s.add_argument("call_id", metavar="CALL_ID", help="the call's id (or a unique prefix of it)")
    s.add_argument("value", metavar="VALUE", help="a number, true or false, or a label")
    s.add_argument("--evaluator", default="feedback", help="whose score it is (default feedback)")
    s.add_argument("--reason", help="why, in a few words")

    prompts = sub.add_parser("prompts", help="versioned prompt templates the router renders",
                             description="Prompt templates kept in the store: messages with {{variable}} "
                             "placeholders, a model and parameters. A router request names one in Respan's prompt "
                             "field.")
    actions = prompts.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = store_command(actions, "push", cmd_prompts, "a new version of a prompt from a YAML or JSON file",
                      "Store FILE (messages, model, parameters) as the next version of NAME.")
    s.add_argument("name", metavar="NAME", help="the prompt's name (its prompt_id)")
    s.add_argument("file", metavar="FILE", help="YAML or JSON: messages with {{variable}} placeholders, model, parameters")
    s = store_command(actions, "list", cmd_prompts, "every prompt, its newest version and labels",
                      "Every prompt with its newest version, how many versions it has, and its labels.")
    s.add_argument("--json", dest="format", action="store_const", const="json", help="JSON Lines, one prompt a line")
    s = store_command(actions, "show", cmd_prompts, "one version of a prompt", "One version of a prompt.")
    s.add_argument("name", metavar="NAME", help="the prompt's name")
    s.add_argument("version", metavar="VERSION", nargs="?", help="a number or a label (default: the newest)")
    s = store_command(actions, "diff", cmd_prompts, "what changed between two versions",
                      "A unified diff of two versions (numbers or labels).")
    s.add_argument("name", metavar="NAME", help="the prompt's name")
    s.add_argument("v1", metavar="V1", help="a version number or label")
    s.add_argument("v2", metavar="V2", help="another")
    s = store_command(actions, "label", cmd_prompts, "point a label (production) at a version",
                      "Point LABEL at VERSION; a request without a version gets the production label's.")
    s.add_argument("name", metavar="NAME", help="the prompt's name")
    s.add_argument("version", metavar="VERSION", type=int, help="the version number")
    s.add_argument("label", metavar="LABEL", help="e.g. production, staging")

    dataset = sub.add_parser("dataset", help="datasets of calls from the logs or JSONL",
                             description="Datasets: recorded calls (input, answer, tags) and an expected answer "
                             "per row, for experiments and replay.")
    actions = dataset.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = store_command(actions, "create", cmd_dataset, "snapshot recorded calls into a new dataset",
                      "Copy the recorded calls matching the filters (successful ones with their bodies, oldest "
                      "first) into the dataset NAME.")
    s.add_argument("name", metavar="NAME", help="the new dataset's name")
    s.add_argument("--from-logs", action="store_true", required=True, help="take the rows from recorded calls")
    s.add_argument("--provider", help="e.g. openai")
    s.add_argument("--model", help="the model asked for or the one that answered")
    s.add_argument("--mode", help="passthrough or router")
    s.add_argument("--customer", help="customer identifier")
    s.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE", help="a metadata key's value (repeatable)")
    time_flags(s)
    s.add_argument("--limit", type=int, help="at most this many calls")
    s.add_argument("--expect-recorded", action="store_true", help="make each recorded answer the row's expected answer")
    s = store_command(actions, "import", cmd_dataset, "a new dataset from JSON Lines",
                      "Create the dataset NAME from FILE: one JSON object a line with request_body and optionally "
                      "response_body, expected, tags, provider, endpoint, model, stream, call_id.")
    s.add_argument("name", metavar="NAME", help="the new dataset's name")
    s.add_argument("file", metavar="FILE", help="a .jsonl file")
    s = store_command(actions, "export", cmd_dataset, "a dataset as JSON Lines",
                      "One JSON object a line per row, in the form import reads.")
    s.add_argument("name", metavar="NAME", help="the dataset")
    s.add_argument("--out", metavar="FILE", help="write here instead of standard output")
    store_command(actions, "list", cmd_dataset, "every dataset and its size", "Every dataset, its rows and when made.")

    replay = sub.add_parser("replay", help="serve a dataset's recorded answers to an app's tests",
                            description="Answer a dataset's calls from what was recorded, offline and deterministic.")
    actions = replay.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = store_command(actions, "serve", cmd_replay_serve, "an HTTP server answering with a dataset's recorded calls",
                      "Serve DATASET on a local port: a request whose model, messages, tools and parameters match a "
                      "recorded call gets its recorded answer in the provider's own wire format (streams event by "
                      "event, at the recorded pace); any other gets a 404. Point the SDK's base URL at it.")
    s.add_argument("dataset", metavar="DATASET", help="the dataset to serve")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=4100, help="port (default 4100; 0 for any free one)")
    s.add_argument("--speed", type=float, default=1.0,
                   help="replay streams this many times faster than recorded; 0 sends them at once (default 1)")

    evalrun = sub.add_parser("eval", help="run a dataset against candidate models",
                             description="Experiments: a dataset's inputs replayed through the router against "
                             "candidate models, scored and compared side by side.")
    actions = evalrun.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = store_command(actions, "run", cmd_eval_run, "replay a dataset against models and compare them",
                      "Send each row's request through the router to each --model (not streamed), score the answers "
                      "and print per model: mean score with a 95% interval per evaluator, cost, latency p50/p95 and "
                      "how many answers differ from the recorded one.")
    s.add_argument("dataset", metavar="DATASET", help="the dataset")
    s.add_argument("--model", action="append", required=True, help="a candidate model or alias the router serves "
                   "(repeatable)")
    s.add_argument("--prompt", metavar="NAME@VERSION", help="render this stored prompt instead of the row's messages "
                   "(variables: the row's metadata, and input, its last user message)")
    s.add_argument("--evaluator", action="append", default=[], metavar="NAME",
                   help="an evaluator from the config's evals.evaluators (repeatable; default: similarity to the "
                   "expected answer, else the recorded one)")
    s.add_argument("--config", metavar="FILE", help="the gateway's config file, for its evaluators")
    s.add_argument("--router", default="http://127.0.0.1:4000/v1", metavar="URL",
                   help="the router's base URL (default http://127.0.0.1:4000/v1)")
    s.add_argument("--key", help="the router key (default: $TAPGATE_MASTER_KEY)")
    s.add_argument("--concurrency", type=int, default=8, help="calls in flight at once (default 8)")
    s.add_argument("--budget-usd", type=float, metavar="USD", help="stop sending once the experiment has cost this")
    s.add_argument("--report", metavar="FILE", help="also write the table as HTML (or SVG, for a .svg name)")
    s.add_argument("--no-store-scores", dest="store_scores", action="store_false",
                   help="do not keep the scores in the store (by default they go on the experiment's recorded calls "
                   "once the gateway has written them, as source experiment)")
    s.add_argument("--json", dest="format", action="store_const", const="json", help="the summary and every result as JSON")
    compare.add_command(sub, store_command, time_flags, formats)

    keys = sub.add_parser("keys", help="create, list, update, revoke and rotate gateway keys",
                          description="Gateway keys name who is calling, with budgets, rate limits, allowed "
                          "models and an expiry. The secret is printed once; the store keeps only its hash.")
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = store_command(actions, "create", cmd_keys_create, "a new key; prints its secret once",
                      "Create a key and print its id and secret (only this once).")
    s.add_argument("--name", required=True, help="what the key is for, e.g. the app or team")
    key_settings(s, update=False)
    secret_format(s)
    s = store_command(actions, "list", cmd_keys_list, "every key and its settings (never a secret)",
                      "Every key with its status, budgets, rate limits, models and metadata.")
    s.add_argument("--json", dest="format", action="store_const", const="json", help="JSON Lines, one key a line")
    s = store_command(actions, "update", cmd_keys_update, "change a key's settings; the gateway applies them at once",
                      "Change a key's budgets, rate limits, models, expiry, metadata, downgrade rules or alert "
                      "destinations. Each flag given replaces that setting whole ('none' removes it); the rest stay. "
                      "The running gateway applies the change within seconds; spend so far counts against new caps.")
    s.add_argument("id", help="the key's id (key_...)")
    s.add_argument("--name", help="a new name")
    key_settings(s, update=True)
    s.add_argument("--json", dest="format", action="store_const", const="json", help="print the key as JSON")
    s = store_command(actions, "revoke", cmd_keys_revoke, "stop a key working",
                      "Revoke a key: the running gateway refuses it within seconds.")
    s.add_argument("id", help="the key's id (key_...)")
    s = store_command(actions, "rotate", cmd_keys_rotate, "a new secret for a key; the old one stops working",
                      "Give a key a new secret, printed once. Its id, settings and spend carry over.")
    s.add_argument("id", help="the key's id (key_...)")
    secret_format(s)
    return p


def key_settings(s: argparse.ArgumentParser, update: bool) -> None:
    """The flags `keys create` and `keys update` share. For update every default is None (not given:
    unchanged), and `none` (0 for --rpm and --tpm, `never` for --expires) removes a setting."""
    many = None if update else []
    s.add_argument("--budget", action="append", default=many, metavar="SPEC",
                   help="<cap><unit>/<period>[@soft,...]: units usd, tokens, requests; periods day, week, month, "
                   "year, lifetime; e.g. 100usd/month@50,80, 10requests/day, usd/month@5,8 (repeatable)"
                   + ("; none: no budgets" if update else ""))
    s.add_argument("--rpm", type=int, help="requests per minute" + (" (0: no limit)" if update else ""))
    s.add_argument("--tpm", type=int, help="tokens per minute (as the providers report them)"
                   + (" (0: no limit)" if update else ""))
    s.add_argument("--models", action="append", default=many, metavar="GLOB",
                   help="a model the key may call, * and ? as wildcards, e.g. gpt-4o* (repeatable; none: every model)")
    s.add_argument("--expires", metavar="WHEN", help="30d, 12h, 90m, 2w from now, or an ISO date or time (UTC)"
                   + ("; never: no expiry" if update else ""))
    s.add_argument("--meta", action="append", default=many, metavar="KEY=VALUE",
                   help="a metadata entry (repeatable)" + ("; none: no metadata" if update else ""))
    s.add_argument("--downgrade", action="append", default=many, metavar="RULE",
                   help="<share>:<model>=<cheaper>: router calls for model go to the cheaper one once a budget of "
                   "the key is past share, e.g. 0.8:gpt-4o=gpt-4o-mini (repeatable)"
                   + ("; none: no rules" if update else ""))
    g = s.add_argument_group("alert destinations", "where this key's budget alerts go, beside the gateway's own"
                             + ("; 'none' removes one" if update else ""))
    g.add_argument("--slack-webhook", metavar="URL", help="a Slack incoming webhook")
    g.add_argument("--webhook", metavar="URL", help="a URL that gets each alert as JSON")
    g.add_argument("--email-to", action="append", metavar="ADDRESS", help="an address for alert emails (repeatable)")
    g.add_argument("--smtp-host", metavar="HOST", help="the SMTP server for alert emails")
    g.add_argument("--smtp-port", type=int, metavar="PORT", help="its port (default 25)")
    g.add_argument("--email-from", metavar="ADDRESS", help="the sender (default tapgate@localhost)")
    g.add_argument("--smtp-starttls", action="store_true", default=None, help="STARTTLS before logging in")
    g.add_argument("--smtp-username", metavar="USER", help="the SMTP login")
    g.add_argument("--smtp-password-env", metavar="VAR", help="the environment variable holding its password")


ALERT_FLAGS = {"slack_webhook": "slack_webhook", "webhook": "webhook", "email_to": "email_to",
               "smtp_host": "smtp_host", "smtp_port": "smtp_port", "email_from": "sender",
               "smtp_starttls": "starttls", "smtp_username": "username", "smtp_password_env": "password_env"}


def alert_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The alert destination flags given, by their Alerts/EmailAlerts field names."""
    return {field: getattr(args, flag) for flag, field in ALERT_FLAGS.items() if getattr(args, flag) is not None}


def secret_format(s: argparse.ArgumentParser) -> None:
    s.add_argument("--json", dest="format", action="store_const", const="json",
                   help='print {"id", "name", "secret"} as JSON, for scripts')


def store_command(sub, name: str, func, summary: str, description: str) -> argparse.ArgumentParser:
    s = sub.add_parser(name, help=summary, description=description)
    s.add_argument("--db", default=default_db(), help=f"the store: a SQLite file or a postgresql:// URL (default "
                   f"${ENV_DB}, else {DEFAULT_DB}, as tapgate_db)")
    s.set_defaults(func=func)
    return s


def time_flags(s: argparse.ArgumentParser) -> None:
    s.add_argument("--since", metavar="WHEN", help="from: 30m, 1h, 2d, 1w ago, or an ISO date or time (UTC)")
    s.add_argument("--until", metavar="WHEN", help="to (exclusive), in the same forms")


def formats(s: argparse.ArgumentParser) -> None:
    g = s.add_mutually_exclusive_group()
    g.add_argument("--json", dest="format", action="store_const", const="json", help="JSON Lines, one object a line")
    g.add_argument("--csv", dest="format", action="store_const", const="csv", help="CSV with a header row")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except queries.StoreError as e:
        print(f"tapgate {args.command}: {e}", file=sys.stderr)
        return 1
    except sqlite3.DatabaseError as e:  # not a tapgate store, or a damaged one
        print(f"tapgate {args.command}: cannot read {shown(args.db)}: {e}", file=sys.stderr)
        return 1
    except Exception as e:
        if type(e).__module__.split(".")[0] != "psycopg":
            raise
        # PostgreSQL answered with an error (a lost connection, a missing table): one line, no password
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"tapgate {args.command}: cannot read {shown(args.db)}: {reason}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `tapgate logs | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())

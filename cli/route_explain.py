"""`tapgate route --explain request.json`: which routing rule a request would match, why, and the plan of
deployments the router would try, from the config file, without sending anything."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_command(sub) -> None:
    s = sub.add_parser("route", help="which routing rule and deployments a request would get",
                       description="Evaluate the config's routing rules and strategies for a request body (the "
                       "JSON a client would POST to the router) and print the rule that matched, why, and "
                       "the deployments the router would try, in order. Nothing is sent.")
    s.add_argument("--explain", metavar="REQUEST.json", required=True, type=Path,
                   help="the request body: OpenAI chat, or Anthropic messages with --anthropic; - reads stdin")
    s.add_argument("--config", metavar="FILE", help="the gateway's config file (tapgate_config)")
    s.add_argument("--anthropic", action="store_true", help="the body is an Anthropic /v1/messages request")
    s.add_argument("--customer", help="the call's customer identifier")
    s.add_argument("--thread", help="the call's thread identifier (experiments sticky by thread)")
    s.add_argument("--key", metavar="ID_OR_NAME", help="the gateway key the call would carry")
    s.add_argument("--header", action="append", default=[], metavar="NAME:VALUE",
                   help="a request header the rules may match (repeatable)")
    s.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE", help="a metadata tag (repeatable)")
    s.add_argument("--json", dest="format", action="store_const", const="json", help="print the explanation as JSON")
    s.set_defaults(func=cmd_route)


def cmd_route(args: argparse.Namespace) -> int:
    from core.config import ConfigError, load_config
    from core.errors import RefusedByRule
    from core.route_plan import routing_for
    from core.routing import UnknownModel
    from core.rules import features_of
    from providers import FRONTS
    from providers.chat import InvalidRequest, UnsupportedParam
    from providers.pricing import PriceTable
    from providers.safe_json import loads

    def fail(message: str) -> int:
        print(f"tapgate route: {message}", file=sys.stderr)
        return 1

    try:
        text = sys.stdin.read() if str(args.explain) == "-" else args.explain.read_text(encoding="utf-8")
        body = loads(text)
    except OSError as e:
        return fail(f"cannot read {args.explain}: {e.strerror}")
    except ValueError as e:
        return fail(f"{args.explain}: not JSON: {e}")
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return fail(f"{args.explain}: a request body with a model is needed")
    try:
        config = load_config(args.config)
        routing = routing_for(config, PriceTable.load(config.prices))
    except (ConfigError, ValueError) as e:
        return fail(str(e))
    if args.anthropic:
        try:
            body, _ = FRONTS["/v1/messages"].to_chat(body, "drop")
        except (InvalidRequest, UnsupportedParam) as e:
            return fail(f"{args.explain}: {e}")
    headers = dict(h.partition(":")[::2] for h in args.header)
    meta = dict(m.partition("=")[::2] for m in args.meta)
    features = features_of(body, metadata=meta, customer=args.customer, key_id=args.key, key_name=args.key,
                           headers={k.strip(): v.strip() for k, v in headers.items()}, thread=args.thread)
    try:
        routed = routing.route(features, body["model"], body.get("fallback_models"),
                               stream=body.get("stream") is True, max_tokens=body.get("max_tokens"))
    except UnknownModel as e:
        return fail(f"the model {e.args[0]!r} is not an alias, a provider/model name or a known model")
    except RefusedByRule as e:  # the explanation is the refusal
        explained = {"model": body["model"], "rule": e.rule, "reason": "refused", "refused": str(e), "plan": []}
    else:
        explained = routed.explain()
    if args.format == "json":
        print(json.dumps(explained, ensure_ascii=False))
        return 0
    print(f"model asked:  {explained['model']}")
    print(f"rule:         {explained['rule'] or '(none)'}")
    print(f"why:          {explained['reason']}")
    if "refused" in explained:
        print(f"refused:      {explained['refused']}")
        return 0
    if "variant" in explained:
        print(f"experiment:   {explained['experiment']}, variant {explained['variant']}")
    print(f"routed as:    {explained['routed_as']}")
    print("plan:")
    for choice in explained["choices"]:
        print(f"  {choice['model']} ({choice['strategy']})")
        for name, score in choice["scores"].items():
            print(f"    {name:<40} score {score}")
        for name, why in choice.get("skipped", {}).items():
            print(f"    {name:<40} skipped: {why}")
    print("tried in order: " + (", ".join(explained["plan"]) or "(nothing)"))
    return 0

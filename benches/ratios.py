#!/usr/bin/env python3
"""Prints the validation-cost table from criterion's estimates of the last
`cargo bench --all-features --bench validate` run (target/criterion/<alg>/<bench>/new)."""
import json
import os
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "target", "criterion")


def mean_ns(group, bench):
    path = os.path.join(root, group, bench, "new", "estimates.json") if bench else os.path.join(root, group, "new", "estimates.json")
    try:
        with open(path) as f:
            return json.load(f)["mean"]["point_estimate"]
    except FileNotFoundError:
        return None


def fmt(ns):
    return "-" if ns is None else (f"{ns / 1000:.1f} µs" if ns >= 1000 else f"{ns:.0f} ns")


print("| alg | true floor (aws-lc-rs, key parsed once) | jsonwebtoken::crypto::verify | validate, cold | cold ÷ floor | validate, cached | service, cold | service, cached |")
print("|---|---|---|---|---|---|---|---|")
for alg in ["RS256", "PS256", "ES256", "EdDSA"]:
    raw, jwt, cold, cached = (mean_ns(alg, b) for b in ["raw_verify", "jsonwebtoken_verify", "validate_cold", "validate_cached"])
    svc_cold, svc_cached = (mean_ns(alg, b) for b in ["service_cold", "service_cached"])
    ratio = f"{cold / raw:.2f}×" if raw and cold else "-"
    print(f"| {alg} | {fmt(raw)} | {fmt(jwt)} | {fmt(cold)} | {ratio} | {fmt(cached)} | {fmt(svc_cold)} | {fmt(svc_cached)} |")
opaque = mean_ns("introspection_cached", "")
print(f"| opaque (introspection cached) | | | | | {fmt(opaque)} | | |")
print()
print(f"baseline: the same in-memory request without any layer: {fmt(mean_ns('baseline_no_layer', ''))}; "
      f"SHA-256 of an RS256 token: {fmt(mean_ns('baseline_sha256_of_rs256_token', ''))}")

"""`make security`: pip-audit over the installed environment, with an outcome that cannot be
misread (see SECURITY.md, "Dependency audit").

- a known vulnerability in an installed package fails the build (exit 1), unless its id is listed
  in SECURITY.md's ignore table and passed with --ignore-vuln (the Makefile does that);
- pip-audit itself failing (no network, service error) fails the build (exit 2) with the reason,
  unless SECURITY_AUDIT_OFFLINE=1 says this machine cannot reach PyPI (then a loud warning);
- packages the vulnerability service does not know (private or mirror-only builds) cannot be
  audited: they are counted and named on stderr, and the build passes. When *every* package is
  unknown nothing was audited at all, and that is said in capitals.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    pip_audit = Path(sys.executable).with_name("pip-audit")
    command = [str(pip_audit), "--progress-spinner", "off", "-f", "json", *argv]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        if os.environ.get("SECURITY_AUDIT_OFFLINE") == "1":
            print(f"WARNING: dependency audit NOT done (SECURITY_AUDIT_OFFLINE=1): {reason}",
                  file=sys.stderr)
            return 0
        print(f"dependency audit failed to run: {reason}\n"
              "(set SECURITY_AUDIT_OFFLINE=1 on machines that cannot reach PyPI)", file=sys.stderr)
        return 2
    dependencies = report.get("dependencies", [])
    vulnerable = [d for d in dependencies if d.get("vulns")]
    skipped = [d for d in dependencies if "skip_reason" in d]
    audited = len(dependencies) - len(skipped)
    for dependency in vulnerable:
        for vuln in dependency["vulns"]:
            fixed = ", ".join(vuln.get("fix_versions") or []) or "no fix yet"
            print(f"VULNERABLE {dependency['name']} {dependency['version']}: {vuln['id']} "
                  f"(fixed in: {fixed})")
    if skipped:
        names = ", ".join(sorted(d["name"] for d in skipped))
        print(f"not audited ({len(skipped)} packages unknown to the vulnerability service): {names}",
              file=sys.stderr)
    if dependencies and audited == 0:
        print("WARNING: NO PACKAGE COULD BE AUDITED: the vulnerability service knows none of the "
              "installed versions (a private mirror?). Run `make security` where PyPI is reachable.",
              file=sys.stderr)
    print(f"dependency audit: {audited} audited, {len(skipped)} not audited, "
          f"{len(vulnerable)} vulnerable")
    return 1 if vulnerable else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

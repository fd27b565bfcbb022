import sys
import time

import pytest

import apps.__main__ as launcher
from apps.__main__ import APPS, ROOT, main


def test_every_listed_app_exists_and_help_lists_them(capsys):
    for app in APPS.values():
        assert (ROOT / app.entry).is_file(), app.entry
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for app in APPS.values():
        assert f"{app.key:<9} {app.title} ({app.framework}, port {app.port})" in out


def test_all_is_the_front_door_and_the_drag_app_on_their_ports(capsys):
    assert main(["all", "--dry-run", "--sd-model", "tiny"]) == 0
    commands = capsys.readouterr().out.splitlines()
    assert len(commands) == 2
    assert commands[0].endswith("-m apps.front.server --host 127.0.0.1 --port 7860 --drag-port 8501")
    assert "streamlit run" in commands[1] and "--server.port 8501" in commands[1]
    assert main(["all", "--dry-run", "--port", "9000", "--drag-port", "9001"]) == 0
    commands = capsys.readouterr().out.splitlines()
    assert commands[0].endswith("--port 9000 --drag-port 9001") and "--server.port 9001" in commands[1]


def test_dry_run_of_one_app(capsys):
    assert main(["keyframe", "--dry-run", "--host", "0.0.0.0"]) == 0
    assert capsys.readouterr().out.splitlines() == [" ".join(APPS["keyframe"].command("0.0.0.0"))]
    assert main(["joint", "--dry-run", "--port", "9002"]) == 0
    assert capsys.readouterr().out.strip().endswith("-m apps.joint_depth.app --host 127.0.0.1 --port 9002")


def test_bad_setting_stops_before_launch_with_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["drag", "--device", "tpu"])
    assert exit_info.value.code == 2
    assert "KINEMA_DEVICE" in capsys.readouterr().err


def test_a_server_that_ends_stops_the_others_and_gives_its_status(monkeypatch):
    started = []
    real_popen = launcher.subprocess.Popen

    def popen(command, **kwargs):
        started.append(real_popen(command, **kwargs))
        return started[-1]

    servers = [(APPS["drag"], [sys.executable, "-c", "import sys; sys.exit(3)"])]
    servers.append((APPS["joint"], [sys.executable, "-c", "import time; time.sleep(60)"]))
    monkeypatch.setattr(launcher, "servers", lambda *args: servers)
    monkeypatch.setattr(launcher.subprocess, "Popen", popen)
    start = time.monotonic()
    assert main(["all"]) == 3
    assert started[1].returncode == -15  # the other server got SIGTERM
    assert time.monotonic() - start < 10

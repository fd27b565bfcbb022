import pytest

from apps.__main__ import APPS, main


def test_unbuilt_apps_are_named(capsys, monkeypatch):
    monkeypatch.setattr("apps.__main__.AppSpec.built", property(lambda self: False))
    assert main(["all"]) == 1
    out = capsys.readouterr().out
    for app in APPS.values():
        assert f"{app.title} ({app.key}) is not built yet" in out
    assert "Nothing to launch yet." in out


def test_dry_run_prints_one_command_per_built_app(capsys, monkeypatch):
    monkeypatch.setattr("apps.__main__.AppSpec.built", property(lambda self: self.key != "keyframe"))
    assert main(["all", "--dry-run", "--sd-model", "tiny"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "Keyframe edit + interpolation (keyframe) is not built yet" in lines[0]
    commands = lines[1:]
    assert len(commands) == 2
    assert "streamlit run" in commands[0] and "--server.port 8501" in commands[0]
    assert commands[1].endswith("-m apps.joint_depth.app --host 127.0.0.1 --port 7861")


def test_bad_setting_stops_before_launch_with_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["drag", "--device", "tpu"])
    assert exit_info.value.code == 2
    assert "KINEMA_DEVICE" in capsys.readouterr().err

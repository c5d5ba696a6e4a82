"""Running `policy-xai` commands in the test process: exit code, stdout, stderr (never a traceback)."""
from policy_xai.cli import main


def cli(capsys, *argv):
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err
    return rc, cap.out, cap.err

"""gunn_search.track.uri: a tracking server's login is checked before anything starts."""

import base64
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from gunn_search.errors import UsageError
from gunn_search.track.uri import check_login, check_tracking_uri, shown_uri
from tests.conftest import free_port

GOOD = "Basic " + base64.b64encode(b"alice:right-pass").decode()


class Login(BaseHTTPRequestHandler):
    """MLflow's basic-auth app in short: 401 without the right login, 403 for bob."""

    def do_GET(self):
        auth = self.headers.get("Authorization")
        code = 200 if auth == GOOD else 403 if auth and "Ym9i" in auth else 401
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    httpd = HTTPServer(("127.0.0.1", 0), Login)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def login(monkeypatch, user, password):
    for k, v in (("MLFLOW_TRACKING_USERNAME", user), ("MLFLOW_TRACKING_PASSWORD", password)):
        if v is None:
            monkeypatch.delenv(k, raising=False)
        else:
            monkeypatch.setenv(k, v)


def test_the_right_login_passes(server, monkeypatch):
    login(monkeypatch, "alice", "right-pass")
    check_tracking_uri(server)


@pytest.mark.parametrize("user, password, words", [
    (None, None, "needs a login: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"),
    ("alice", "wrong-pass", "refused the login in MLFLOW_TRACKING_USERNAME/"),
    ("bob", "any-pass", "refused user 'bob'"),
])
def test_a_refused_login_is_one_line_naming_the_server_without_the_password(
        server, monkeypatch, user, password, words):
    login(monkeypatch, user, password)
    with pytest.raises(UsageError) as e:
        check_tracking_uri(server)
    msg = str(e.value)
    assert msg.startswith(f"tracking server {server}: ") and words in msg and "\n" not in msg
    assert "pass" not in msg.replace("PASSWORD", "")


def test_a_server_that_does_not_answer_is_left_to_the_commands(monkeypatch):
    login(monkeypatch, "alice", "right-pass")
    check_login(f"http://127.0.0.1:{free_port()}")  # nothing listens: no error here


def test_a_login_in_the_url_is_refused_and_masked():
    with pytest.raises(UsageError) as e:
        check_tracking_uri("http://alice:right-pass@127.0.0.1:5000")
    assert "right-pass" not in str(e.value) and "alice:***@" in str(e.value)
    assert shown_uri("http://alice:s3cret@h:5000/x") == "http://alice:***@h:5000/x"
    assert shown_uri("http://h:5000") == "http://h:5000"

import os
import sys
import unittest

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from app import app  # noqa: E402


class HelloWorldTest(unittest.TestCase):
    def setUp(self):
        app.config["TESTING"] = True
        self.client = app.test_client()

    def test_root_returns_greeting(self):
        response = self.client.get("/")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.get_data(as_text=True), "Hello, world! (Kiln example)")

    def test_version_reports_app_version(self):
        os.environ["APP_VERSION"] = "abc123"
        try:
            response = self.client.get("/version")
        finally:
            del os.environ["APP_VERSION"]
        self.assertEqual(response.get_data(as_text=True), "abc123")

    def test_unknown_path_is_404(self):
        response = self.client.get("/nope")
        self.assertEqual(response.status_code, 404)


if __name__ == "__main__":
    unittest.main()

import os

from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello_world():
    return "Hello, world! (Kiln example)"


@app.route("/version")
def version():
    # The commit the running image was built from (set by deploy/start.sh).
    return os.environ.get("APP_VERSION", "dev")


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)

"""What gunicorn serves: `gunicorn berth_demo.main:app -k uvicorn_worker.UvicornWorker`.

Importing this module reads and checks the environment; a bad setting stops the import with one
line on stderr (see berth_demo.config), so a misconfigured release never answers a request.
"""

from berth_demo.app import create_app
from berth_demo.config import load_settings_or_exit

app = create_app(load_settings_or_exit())

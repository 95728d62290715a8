"""What gunicorn serves: `gunicorn berth_flask.main:app -k gthread`.

Importing this module reads and checks the environment; a bad setting stops the import with one
line on stderr (see berth_flask.config), so a misconfigured release never answers a request.
"""

from berth_flask.app import create_app
from berth_flask.config import load_settings_or_exit

app = create_app(load_settings_or_exit())

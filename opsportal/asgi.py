"""ASGI entry point: ``daphne opsportal.asgi:application`` (HTTP and WebSocket)."""

from __future__ import annotations

import os

from opsportal.env import EnvError, exit_on_env_error

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsportal.settings")

try:
    from django.core.asgi import get_asgi_application

    django_asgi_app = get_asgi_application()
except EnvError as error:
    exit_on_env_error(error)

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator

from opsportal.routing import websocket_urlpatterns

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

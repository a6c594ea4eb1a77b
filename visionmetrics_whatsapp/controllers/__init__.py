from . import sandbox
from . import webhook

from . import sandbox
from . import webhook
from . import link

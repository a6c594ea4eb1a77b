from . import test_company_isolation
from . import test_integration_secrets
from . import test_models
from . import test_connect_flow
from . import test_session_monitor
from . import test_webhook
from . import test_webhook_providers
from . import test_connect_tour

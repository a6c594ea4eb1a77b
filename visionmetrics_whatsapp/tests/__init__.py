from . import test_integration_secrets
from . import test_company_isolation
from . import test_models

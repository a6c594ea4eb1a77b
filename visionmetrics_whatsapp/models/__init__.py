from . import vm_whatsapp_integration
from . import vm_whatsapp_session
from . import vm_whatsapp_conversation
from . import vm_whatsapp_message
from . import vm_whatsapp_webhook_log
from . import crm_lead
from . import res_company
from . import res_config_settings

from . import vm_whatsapp_connect_wizard

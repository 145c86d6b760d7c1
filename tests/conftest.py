# nameko's services run on eventlet; patch before anything else imports socket or threading.
import eventlet

eventlet.monkey_patch()

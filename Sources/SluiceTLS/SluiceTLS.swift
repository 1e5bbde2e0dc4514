import CShims
import SluiceRouting

//! SSH transport on russh. (Being written.)

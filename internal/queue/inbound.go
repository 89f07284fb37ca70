package queue

// DefaultMaxSeqJump is the bound ErrSeqJump enforces unless SetMaxSeqJump
// says otherwise.
const DefaultMaxSeqJump = 100000

// SetMaxSeqJump sets the bound ErrSeqJump enforces; 0 means
// DefaultMaxSeqJump. Call it before the first ApplyResults.
func (s *Spool) SetMaxSeqJump(n uint64) {
	if n == 0 {
		n = DefaultMaxSeqJump
	}
	s.maxJump = n
}

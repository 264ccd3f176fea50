//! Sources read from real repositories made in temporary directories: git with git2, SVN with
//! `svnadmin` and `svn`, CVS with `cvs init` and `cvs import`.

mod cvs;
mod fixture;
mod git;
mod hostile;
mod svn;
